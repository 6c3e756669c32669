"""Slack incoming webhook: a Block Kit message (header, one section per alert).

Docs: https://api.slack.com/messaging/webhooks and https://api.slack.com/reference/block-kit/blocks
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import httpx

from rules.alerts import Alert
from sinks import http, redact
from sinks.config import SlackConfig
from sinks.render import Message, item_mrkdwn, render

# Block Kit limits: 50 blocks a message, 150 characters in a header, 3000 in a section text.
MAX_ITEMS: Final = 47
HEADER_CHARS: Final = 150
SECTION_CHARS: Final = 3000


class SlackSink:
    """Slack answers errors with an HTTP status (400 invalid_payload, 403, 404, 410, 429 with
    Retry-After), so the status alone decides."""

    def __init__(self, config: SlackConfig, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        redact.install()

    @classmethod
    def from_config(cls, config: SlackConfig, client: httpx.AsyncClient) -> SlackSink:
        return cls(config, client)

    async def send(self, alerts: Sequence[Alert]) -> None:
        url = self._config.url.get().get_secret_value()
        body = http.json_bytes(payload(render(alerts, self._config.language)))
        response = await http.post(self._client, self.name, url, body)
        http.raise_for_status(self.name, response)


def payload(message: Message) -> dict[str, Any]:
    message = message.keep(MAX_ITEMS)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:HEADER_CHARS]}}
    ]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": item_mrkdwn(i)[:SECTION_CHARS]}}
        for i in message.items
    ]
    if message.more:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": message.more}]})
    # `text` is what notifications and screen readers show.
    return {"text": message.title, "blocks": blocks}
