"""Microsoft Teams through a Workflows webhook: an Adaptive Card in `attachments`.

Office 365 / Microsoft 365 connectors (Incoming Webhook) are retired: create the URL with the
Workflows app's "When a Teams webhook request is received" trigger (post to a channel).
Docs: https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

import httpx

from sinks import http
from sinks.base import SinkError
from sinks.config import TeamsConfig
from sinks.render import Item, Message
from sinks.robot import RobotSink

CARD_TYPE: Final = "application/vnd.microsoft.card.adaptive"
MAX_ITEMS: Final = 30  # a Teams message is capped at about 28 KB
TRANSIENT: Final = re.compile(r"throttl|too ?many|timed? ?out|temporar|busy", re.IGNORECASE)
COLOR: Final = {"critical": "Attention", "warning": "Warning", "resolved": "Good"}


class TeamsSink(RobotSink[TeamsConfig]):
    """A Workflows webhook ("When a Teams webhook request is received") answers 202 with an
    empty body once it has the card; errors come as a 4xx/5xx status, or, from a flow that
    replies itself or a legacy connector, inside a 2xx body: `{"error": {"code", "message"}}`
    or "Microsoft Teams endpoint returned HTTP error 429 ...". Both are failures here."""

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message, self._config.mention_user_ids)

    def check(self, response: httpx.Response) -> None:
        http.raise_for_status(self.name, response)
        error = body_error(response.text)
        if error is not None:
            status, text = error
            retryable = status is not None and (status == 429 or status >= 500)
            # Without a status: a refusal, unless the words say "try later".
            retryable = retryable or TRANSIENT.search(text) is not None
            text = http.scrub(text[:200], self.secrets())
            raise SinkError(self.name, f"error in a 2xx answer: {text}", retryable=retryable)


def body_error(text: str) -> tuple[int | None, str] | None:
    """(the HTTP status it names, if any; the error text) when a 2xx body reports a failure."""
    text = text.strip()
    if text in ("", "1"):  # Workflows: empty; legacy connectors: "1"
        return None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if not error:
            return None
        detail = error if isinstance(error, dict) else {"message": str(error)}
        message = f"{detail.get('code', '')} {detail.get('message', '')}".strip()
        return _status_in(message), message
    if "error" in text.lower() or "fail" in text.lower():
        return _status_in(text), text
    return None


def _status_in(text: str) -> int | None:
    match = re.search(r"\b([45]\d\d)\b", text)
    return int(match[1]) if match else None


def payload(message: Message, mentions: Sequence[str] = ()) -> dict[str, Any]:
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
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if mentions:
        # A mention is an `<at>` placeholder in a TextBlock plus its entity under `msteams`.
        tags = [f"<at>{user}</at>" for user in mentions]
        body.append({"type": "TextBlock", "text": " ".join(tags), "wrap": True})
        card["msteams"] = {
            "entities": [
                {"type": "mention", "text": tag, "mentioned": {"id": user, "name": user}}
                for tag, user in zip(tags, mentions, strict=True)
            ]
        }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card}],
    }


def _item(item: Item) -> list[dict[str, Any]]:
    facts = [{"title": name, "value": value} for name, value in item.facts]
    blocks: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": item.headline, "weight": "Bolder", "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    if item.links:
        actions = [{"type": "Action.OpenUrl", "title": t, "url": u} for t, u in item.links]
        blocks.append({"type": "ActionSet", "actions": actions})
    return blocks
