"""Generic JSON webhook: POST {"version": "1", "alerts": [...]} to a URL the user owns."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from pydantic import SecretStr

from rules.alerts import Alert
from sinks import redact
from sinks.base import SinkError


class WebhookSink:
    """The URL is a secret (chat robots put their token in it): it never appears in an error."""

    def __init__(self, url: SecretStr, client: httpx.AsyncClient, name: str = "webhook") -> None:
        self.name = name
        self._url = url
        self._client = client
        redact.install()

    async def send(self, alerts: Sequence[Alert]) -> None:
        body = {"version": "1", "alerts": [alert.model_dump(mode="json") for alert in alerts]}
        try:
            response = await self._client.post(self._url.get_secret_value(), json=body)
        except httpx.HTTPError as exc:
            # The exception text can carry the URL; keep only its class.
            raise SinkError(
                self.name, f"request failed ({type(exc).__name__})", retryable=True
            ) from None
        status = response.status_code
        if status < 300:
            return
        retryable = status == 429 or status >= 500
        raise SinkError(
            self.name, f"HTTP {status}", retryable=retryable, retry_after=_retry_after(response)
        )


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (RFC 9110: 1*DIGIT); an HTTP date or anything else is ignored,
    and the caller caps the wait anyway."""
    value = response.headers.get("retry-after", "").strip()
    if value.lstrip("-").isdigit():
        return max(0.0, float(value))
    return None
