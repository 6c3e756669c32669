"""Slack incoming webhook: a Block Kit message (header, one section per alert).

Docs: https://api.slack.com/messaging/webhooks and https://api.slack.com/reference/block-kit/blocks
"""

from __future__ import annotations

from typing import Any, Final

from sinks.config import SlackConfig
from sinks.render import Message, item_mrkdwn
from sinks.robot import RobotSink

# Block Kit limits: 50 blocks a message, 150 characters in a header, 3000 in a section text.
MAX_ITEMS: Final = 47
HEADER_CHARS: Final = 150
SECTION_CHARS: Final = 3000


class SlackSink(RobotSink[SlackConfig]):
    """Slack answers errors with an HTTP status (400 invalid_payload, 403, 404, 410, 429 with
    Retry-After), so the status alone decides."""

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message)


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
