"""Amazon Marketing Stream through an Amazon SQS queue: the way most sellers receive it (Amazon's
SNS topics deliver to a queue of theirs), next to the Firehose HTTP endpoint.

Facts relied on (Amazon SNS and SQS API references and the SNS developer guide, read through
the search tool):
- SNS delivers to an SQS queue a JSON envelope per message (Type "Notification", Message = the
  published text), unless the subscription has raw message delivery (then the text itself).
- A queue subscribed to a topic of another AWS account (Amazon's Marketing Stream topics are)
  must confirm the subscription: its first message is Type "SubscriptionConfirmation" with
  TopicArn, Token and SubscribeURL; an HTTP GET of SubscribeURL confirms it (ConfirmSubscription
  needs no signature), and the token is good for two days.
- ReceiveMessage long-polls up to 20 s and returns at most 10 messages; a message is received
  again once its visibility timeout passes unless it was deleted (DeleteMessageBatch, at most
  10 entries, by ReceiptHandle).

A batch's events are handed to the sink and only then are its messages deleted: a failure
leaves them in the queue, and their redelivery changes nothing, since MarketingStream keeps
each campaign-hour's records by idempotency_id. A confirmation is only followed to an SNS host
(`confirm_url`), so a message put in the queue by someone else cannot make us fetch any URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import httpx

from connectors.amazon_ads import SNS_URL
from connectors.amazon_ads_stream import MarketingStream
from connectors.base import EventSink
from streams.events import Event

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

log = logging.getLogger(__name__)

# Where a SubscribeURL may point: an SNS endpoint of an AWS region (China's included).
MAX_MESSAGES: Final = 10  # ReceiveMessage's and DeleteMessageBatch's limit
WAIT_SECONDS: Final = 20  # the longest long poll
ERROR_PAUSE: Final = 5.0


@dataclass
class QueueStats:
    messages: int = 0
    events: int = 0
    confirmed: int = 0
    failed_batches: int = 0


@dataclass
class MarketingStreamQueue:
    """Reads `queue_url` until cancelled: records to events through `stream`, confirmations
    followed, messages deleted once the sink took their events."""

    stream: MarketingStream
    sqs: SQSClient
    queue_url: str
    sink: EventSink
    http: httpx.AsyncClient
    confirm_url: str = SNS_URL
    wait_seconds: int = WAIT_SECONDS
    stats: QueueStats = field(default_factory=QueueStats)

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception as exc:  # the queue or the sink: log, wait, read again
                self.stats.failed_batches += 1
                log.error("sqs %s: %r; reading again in %.0fs", self.queue_url, exc, ERROR_PAUSE)
                await asyncio.sleep(ERROR_PAUSE)

    async def poll(self) -> int:
        """One ReceiveMessage and what it brought; the number of messages handled."""
        answer = await self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=MAX_MESSAGES,
            WaitTimeSeconds=self.wait_seconds,
        )
        messages = answer.get("Messages", [])
        done: list[dict[str, str]] = []
        latest: dict[tuple[str, datetime], Event] = {}
        for message in messages:
            body, handle = message.get("Body", ""), message.get("ReceiptHandle", "")
            source = f"sqs {message.get('MessageId', '?')}"
            control = _control(body)
            if control is not None and control.get("Type") == "SubscriptionConfirmation":
                if not await self._confirm(control, source):
                    continue  # left in the queue: tried again after its visibility timeout
            else:
                for event in await self.stream.handle(body.encode(), source):
                    latest[(event.campaign_id, event.interval_start)] = event
            done.append({"Id": str(len(done)), "ReceiptHandle": handle})
        events = list(latest.values())
        if events:
            await self.sink(events)  # raises: nothing deleted, every message comes back
        await self._delete(done)
        self.stats.messages += len(messages)
        self.stats.events += len(events)
        return len(messages)

    async def _confirm(self, message: dict[str, Any], source: str) -> bool:
        url, topic = message.get("SubscribeURL"), message.get("TopicArn")
        if not isinstance(url, str) or not re.match(self.confirm_url, url):
            # Never fetched, never logged whole (it carries the token): someone else's message.
            log.error("%s: subscription confirmation for %s not from SNS; deleted", source, topic)
            return True
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            log.error("%s: could not confirm the subscription to %s: %r", source, topic, exc)
            return False
        if response.status_code != 200:
            log.error(
                "%s: SNS refused to confirm %s (HTTP %d)", source, topic, response.status_code
            )
            return False
        self.stats.confirmed += 1
        log.info("%s: subscription to %s confirmed", source, topic)
        return True

    async def _delete(self, entries: Sequence[dict[str, str]]) -> None:
        for start in range(0, len(entries), MAX_MESSAGES):
            batch = list(entries[start : start + MAX_MESSAGES])
            answer = await self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": e["Id"], "ReceiptHandle": e["ReceiptHandle"]} for e in batch],
            )
            for failure in answer.get("Failed", []):
                # Harmless: the message comes back and changes nothing.
                log.warning("sqs: could not delete a message: %s", failure.get("Message"))


def _control(body: str) -> dict[str, Any] | None:
    """The SNS envelope of a message, if it is one that is not data (or None)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("Type") not in (None, "Notification"):
        return message
    return None
