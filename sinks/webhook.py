"""Generic JSON webhook: POST {"version": "1", "alerts": [...]} to a URL the user owns.

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
        payload = {"version": "1", "alerts": [alert.model_dump(mode="json") for alert in alerts]}
        body = http.json_bytes(payload)
        headers = {}
        if self._signing_secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._signing_secret.get_secret_value(), body)
        url = self._url.get_secret_value()
        response = await http.post(self._client, self.name, url, body, headers)
        http.raise_for_status(self.name, response)
