"""What every push receiver (Shopify, TikTok Shop and Shopee webhooks, Firehose) shares: the ids
it recently handed off, since platforms deliver again after a failure or just twice, and the
hand-off that answers 'retry' rather than lose events."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence

from connectors.base import EventSink, RejectSink
from rules.errors import InvalidEventError
from streams.events import Event

log = logging.getLogger(__name__)


class Recent:
    """The last `size` delivery keys handed off, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)


async def hand_off(sink: EventSink, events: Sequence[Event], timeout: float, what: str) -> bool:
    """Give `events` to `sink` within `timeout`; False (logged) on any failure, so the receiver
    answers with a status that makes the platform deliver again."""
    if not events:
        return True
    try:
        await asyncio.wait_for(sink(events), timeout)
    except Exception as exc:  # any failure means: let the platform retry
        log.error("%s: hand-off failed (%s); asking for a retry", what, type(exc).__name__)
        return False
    return True


async def reject(on_rejected: RejectSink | None, error: InvalidEventError) -> None:
    """A delivery that a retry cannot fix: to the caller's reject sink, else the log."""
    if on_rejected is not None:
        await on_rejected(error)
    else:
        log.warning("rejected %s: %s", error.source, error.reason)
