"""Slack incoming webhook: a Block Kit message (header, one section per alert).

Docs: https://api.slack.com/messaging/webhooks and https://api.slack.com/reference/block-kit/blocks
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import httpx

from sinks import http
from sinks.base import SinkError
from sinks.config import SlackConfig
from sinks.render import Message, item_mrkdwn
from sinks.robot import RobotSink

# Block Kit limits: 50 blocks a message, 150 characters in a header, 3000 in a section text.
MAX_ITEMS: Final = 47
HEADER_CHARS: Final = 150
SECTION_CHARS: Final = 3000
ERROR_TOKEN: Final = re.compile(r"[a-z][a-z_]{2,60}")  # invalid_payload, no_service, ...


class SlackSink(RobotSink[SlackConfig]):
    """Slack answers errors with an HTTP status (400 invalid_payload, 403, 404, 410, 429 with
    Retry-After) and an error token as the body; success is 200 "ok". A 2xx whose body is an
    error token (a proxy or gateway that flattens statuses) is a refusal too."""

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message, self._config.mention_user_ids)

    def check(self, response: httpx.Response) -> None:
        http.raise_for_status(self.name, response)
        text = response.text.strip()
        if text not in ("", "ok") and ERROR_TOKEN.fullmatch(text):
            raise SinkError(self.name, f"error in a 2xx answer: {text}", retryable=False)


def payload(message: Message, mentions: Sequence[str] = ()) -> dict[str, Any]:
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
    if mentions:
        # Slack notifies a member written `<@U012AB3CD>` in a mrkdwn text.
        who = " ".join(f"<@{user}>" for user in mentions)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": who}})
    # `text` is what notifications and screen readers show.
    return {"text": message.title, "blocks": blocks}
