"""What every push receiver (Shopify, TikTok Shop and Shopee webhooks, Firehose) shares: one
POST endpoint with a body limit (`PushReceiver`), the delivery keys it recently handed off,
since platforms deliver again after a failure or just twice, and the hand-off that answers
'retry' rather than lose events."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

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


class PushReceiver:
    """The base of a push endpoint: POST `path` goes to `handle`; `once` runs a delivery
    unless its key was handed off lately or is being handed off now, and remembers the key
    when the delivery was answered 2xx (anything else: the platform delivers again)."""

    def __init__(self, path: str, *, remember: int = 100_000, max_body: int = 1024**2) -> None:
        self.path = path
        self.duplicates = 0
        self._seen = Recent(remember)
        self._in_flight: set[str] = set()
        self._max_body = max_body

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        app.router.add_post(self.path, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError  # pragma: no cover - every receiver has its own

    def repeated(self, key: str) -> bool:
        """A delivery already handed off (or being handed off): answer it as done."""
        if key and (key in self._seen or key in self._in_flight):
            self.duplicates += 1
            return True
        return False

    async def once(self, key: str, deliver: Callable[[], Awaitable[web.Response]]) -> web.Response:
        self._in_flight.add(key)
        try:
            response = await deliver()
        finally:
            self._in_flight.discard(key)
        if key and 200 <= response.status < 300:
            self._seen.add(key)
        return response


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
