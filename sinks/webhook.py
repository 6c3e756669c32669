"""Generic JSON webhook: POST {"version": "1", "alerts": [...]} to a URL the user owns.

Each alert carries `key`, the idempotency key of its transition, and the request carries
`Idempotency-Key`, a digest of the keys it holds: kpiwatch sends a transition once, but a worker
killed after the receiver answered and before it noted the answer sends it again, and a receiver
that remembers keys drops that repeat.

With a signing secret, the request carries `X-Kpiwatch-Signature: sha256=<hex>`, the lowercase
hex HMAC-SHA256 of the raw request body keyed by the secret (the scheme GitHub uses for
`X-Hub-Signature-256`). A receiver recomputes it over the bytes it got and compares in constant
time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

import httpx
from pydantic import SecretStr

from rules.alerts import Alert
from sinks import http, redact
from sinks.config import WebhookConfig

SIGNATURE_HEADER: Final = "X-Kpiwatch-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """The URL is a secret (chat robots put their token in it): it never appears in an error."""

    def __init__(
        self,
        url: SecretStr,
        client: httpx.AsyncClient,
        name: str = "webhook",
        signing_secret: SecretStr | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._client = client
        self._signing_secret = signing_secret
        redact.install()

    @classmethod
    def from_config(cls, config: WebhookConfig, client: httpx.AsyncClient) -> WebhookSink:
        secret = config.signing_secret.get() if config.signing_secret else None
        return cls(config.url.get(), client, config.name, secret)

    async def send(self, alerts: Sequence[Alert]) -> None:
        payload = {
            "version": "1",
            "alerts": [{**alert.model_dump(mode="json"), "key": alert.key} for alert in alerts],
        }
        body = http.json_bytes(payload)
        keys = "\n".join(sorted(alert.key for alert in alerts)).encode()
        headers = {IDEMPOTENCY_HEADER: hashlib.sha256(keys).hexdigest()[:32]}
        if self._signing_secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._signing_secret.get_secret_value(), body)
        url = self._url.get_secret_value()
        response = await http.post(self._client, self.name, url, body, headers)
        http.raise_for_status(self.name, response)
