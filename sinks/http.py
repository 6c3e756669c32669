"""One POST for every HTTP sink: failures become SinkErrors that never carry the URL or a secret.

Retry policy by HTTP status (Alertmanager's notify does the same): a transport error, 429 or
5xx may work later; any other non-2xx is the receiver refusing this payload and will not.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

import httpx

from sinks.base import SinkError

JSON_HEADERS: dict[str, str] = {"content-type": "application/json"}


def new_client(timeout: float = 10.0) -> httpx.AsyncClient:
    """The one client HTTP sinks share, with explicit timeouts (`delivery.timeout`)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)))


def json_bytes(payload: object) -> bytes:
    """The exact bytes sent (and signed): UTF-8 JSON, Chinese text left readable."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def post(
    client: httpx.AsyncClient,
    sink: str,
    url: str,
    content: bytes,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST `content` as JSON; raise SinkError on a transport error or a 429/5xx status."""
    response = await _post(client, url, content, {**JSON_HEADERS, **(headers or {})})
    if isinstance(response, str):
        raise SinkError(sink, f"request failed ({response})", retryable=True) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise status_error(sink, response)
    return response


async def _post(
    client: httpx.AsyncClient, url: str, content: bytes, headers: Mapping[str, str]
) -> httpx.Response | str:
    """The response, or the class name of the transport error.

    httpx errors name the URL; raising SinkError outside the `except` block keeps the httpx
    error out of its `__cause__` and `__context__`, so no traceback or error reporter sees it.
    """
    try:
        return await client.post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def status_error(sink: str, response: httpx.Response) -> SinkError:
    status = response.status_code
    retryable = status == 429 or status >= 500
    return SinkError(sink, f"HTTP {status}", retryable=retryable, retry_after=retry_after(response))


def raise_for_status(sink: str, response: httpx.Response) -> None:
    if response.status_code >= 300:
        raise status_error(sink, response)


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (RFC 9110: 1*DIGIT); an HTTP date or anything else is ignored,
    and the caller caps the wait anyway."""
    value = response.headers.get("retry-after", "").strip()
    if value.lstrip("-").isdigit():
        return max(0.0, float(value))
    return None


def raise_for_code(
    sink: str,
    response: httpx.Response,
    *,
    code_key: str,
    message_key: str,
    retryable_codes: Mapping[int, float | None],
    secrets: Collection[str] = (),
) -> None:
    """Chat robots answer errors with a code in the JSON body, often under HTTP 200.

    Codes in `retryable_codes` (rate limits, "system busy") may work later, after the seconds
    given (None: the usual backoff); any other non-zero code is a refusal. Without a code, the
    HTTP status decides.
    """
    body = _json_object(response)
    code = body.get(code_key)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        text = scrub(str(body.get(message_key, ""))[:200], secrets)
        raise SinkError(
            sink,
            f"{code_key} {code}: {text}".rstrip(": "),
            retryable=code in retryable_codes,
            retry_after=retryable_codes.get(code) or retry_after(response),
        )
    raise_for_status(sink, response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def url_secrets(url: str) -> list[str]:
    """A webhook URL and the parts of it that are tokens: query values and long path segments
    (Slack's, Feishu's and Teams' tokens are path segments)."""
    parsed = httpx.URL(url)
    segments = [s for s in parsed.path.split("/") if len(s) >= 16]
    return [url, *(value for _, value in parsed.params.multi_items() if value), *segments]


def scrub(text: str, secrets: Collection[str]) -> str:
    """A receiver's error text, with any secret it might echo back cut out."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "<redacted>")
    return text
