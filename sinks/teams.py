"""Microsoft Teams webhook (Workflows or legacy Incoming Webhook): an Adaptive Card attachment.

Docs: https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
"""

from __future__ import annotations

from typing import Any, Final

from sinks.config import TeamsConfig
from sinks.render import Item, Message
from sinks.robot import RobotSink

CARD_TYPE: Final = "application/vnd.microsoft.card.adaptive"
MAX_ITEMS: Final = 30  # a Teams message is capped at about 28 KB
COLOR: Final = {"critical": "Attention", "warning": "Warning", "resolved": "Good"}


class TeamsSink(RobotSink[TeamsConfig]):
    """Teams answers with an HTTP status (Workflows: 202; legacy webhooks: 200), so the status
    alone decides."""

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message)


def payload(message: Message) -> dict[str, Any]:
    message = message.keep(MAX_ITEMS)
    title = {
        "type": "TextBlock",
        "text": message.title,
        "size": "Large",
        "weight": "Bolder",
        "color": COLOR[message.level],
        "wrap": True,
    }
    body = [title, *(block for item in message.items for block in _item(item))]
    if message.more:
        body.append({"type": "TextBlock", "text": message.more, "isSubtle": True, "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card}],
    }


def _item(item: Item) -> list[dict[str, Any]]:
    facts = [{"title": name, "value": value} for name, value in item.facts]
    return [
        {"type": "TextBlock", "text": item.headline, "weight": "Bolder", "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
