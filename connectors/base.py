"""What every API connector is: a Source of pages of events, each page with the cursor to resume
after it, and `run_source`, the loop that hands a page off before checkpointing its cursor.

A source that serves one store's feed (`FeedRef`) reports each pass to the engine as a
FeedEvent, ok or failed, so that rules can tell a broken feed from a store that sold nothing.

A kill between hand-off and checkpoint replays that page on restart; that is harmless because
every connector derives event_id from the platform's own ids, and the engine counts an id once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from connectors.checkpoint import CheckpointStore
from rules.errors import InvalidEventError, ServiceError
from streams.events import MAX_REASON, Event, FeedEvent, FeedName, Platform

log = logging.getLogger(__name__)

EventSink = Callable[[Sequence[Event]], Awaitable[None]]
RejectSink = Callable[[InvalidEventError], Awaitable[None]]
# Told of every page once its cursor is saved (metrics, progress logs).
PageHook = Callable[["Source", "Page"], None]
# Told of every pass that failed (metrics); the error is already logged.
FailureHook = Callable[["Source", Exception], None]


class SourceError(ServiceError):
    """A platform API failed in a way a retry did not cure; `where` names source and page."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")

    @property
    def refused(self) -> bool:
        """The platform refused this request itself (a bad id, a record of another shop), as
        opposed to failing (transport, auth, 5xx): platforms' errors say which."""
        return False


@dataclass(frozen=True)
class Page:
    """Events from one API page, the records of it that were rejected, and the cursor that
    resumes right after it (an opaque string the source alone understands)."""

    events: Sequence[Event]
    cursor: str
    rejected: Sequence[InvalidEventError] = ()


class Source(Protocol):
    """`name` is the checkpoint key: one per platform, feed and store (`amazon_sp:orders:us-1`)."""

    @property
    def name(self) -> str: ...

    def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        """Pages from `cursor` (None: the configured start) until the feed is caught up."""
        ...


@dataclass(frozen=True)
class FeedRef:
    """The store feed a source reads, as the engine knows the store."""

    platform: Platform
    marketplace: str
    store_id: str
    feed: FeedName

    def report(self, status: Literal["ok", "failed"], reason: str | None = None) -> FeedEvent:
        """This pass's FeedEvent; its id is unique per pass, so a repeat counts once."""
        now = datetime.now(UTC)
        if reason is not None and len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
        return FeedEvent(
            event_id=f"feed:{self.store_id}:{self.feed}:{now.isoformat()}",
            occurred_at=now,
            platform=self.platform,
            marketplace=self.marketplace,
            store_id=self.store_id,
            feed=self.feed,
            status=status,
            reason=reason,
        )


@dataclass
class RunStats:
    pages: int = 0
    events: int = 0
    rejected: int = 0
    # The "no data" rule's input: when this source last finished a page without error.
    last_success: datetime | None = None


async def run_source(
    source: Source,
    sink: EventSink,
    checkpoints: CheckpointStore,
    *,
    on_rejected: RejectSink | None = None,
    stats: RunStats | None = None,
    on_page: PageHook | None = None,
    feed: FeedRef | None = None,
) -> RunStats:
    """One pass over `source` from its checkpoint: each page is handed to `sink` (which must
    return only once the events are durable), then its cursor is saved. With `feed`, the pass
    is reported to the engine: ok once the source is caught up, failed (then re-raised)."""
    stats = stats if stats is not None else RunStats()
    try:
        await _pass(source, sink, checkpoints, on_rejected, stats, on_page)
    except ServiceError as exc:
        if feed is not None:
            await _report(sink, feed.report("failed", str(exc)), source.name)
        raise
    if feed is not None:
        await sink([feed.report("ok")])
    return stats


async def _report(sink: EventSink, event: FeedEvent, name: str) -> None:
    """A failed pass's report, best effort: the sink may be what failed."""
    try:
        await sink([event])
    except Exception as exc:  # the pass's own error is what gets raised
        log.warning("%s: could not report the failed pass: %r", name, exc)


async def _pass(
    source: Source,
    sink: EventSink,
    checkpoints: CheckpointStore,
    on_rejected: RejectSink | None,
    stats: RunStats,
    on_page: PageHook | None,
) -> None:
    cursor = await checkpoints.load(source.name)
    async for page in source.pages(cursor):
        if page.events:
            await sink(page.events)
        for error in page.rejected:
            await (on_rejected or _log_rejected)(error)
        await checkpoints.save(source.name, page.cursor)
        stats.pages += 1
        stats.events += len(page.events)
        stats.rejected += len(page.rejected)
        stats.last_success = datetime.now(UTC)
        if on_page is not None:
            on_page(source, page)


async def poll_forever(
    source: Source,
    sink: EventSink,
    checkpoints: CheckpointStore,
    *,
    interval: float,
    on_rejected: RejectSink | None = None,
    on_page: PageHook | None = None,
    on_failure: FailureHook | None = None,
    feed: FeedRef | None = None,
) -> None:
    """`run_source` every `interval` seconds; a failed pass is logged and retried next time
    (its checkpoint is where the last good page left it)."""
    stats = RunStats()
    while True:
        try:
            await run_source(
                source,
                sink,
                checkpoints,
                on_rejected=on_rejected,
                stats=stats,
                on_page=on_page,
                feed=feed,
            )
        except ServiceError as exc:
            log.error("%s: pass failed, retrying in %.0fs: %s", source.name, interval, exc)
            if on_failure is not None:
                on_failure(source, exc)
        await asyncio.sleep(interval)


async def _log_rejected(error: InvalidEventError) -> None:
    log.warning("rejected %s: %s", error.source, error.reason)


async def each_alone(
    keys: Sequence[str],
    fetch: Callable[[list[str]], Awaitable[list[Any]]],
    error: type[SourceError],
    what: str,
    where: str,
) -> tuple[list[Any], list[InvalidEventError]]:
    """`fetch(keys)` at once; if the platform refuses the batch, each key on its own, so one
    record it will not give is dead-lettered with the reason (`{where} {what} {key}`) instead of
    holding back every record after it. A failure that is not a refusal is raised; so is the
    batch's refusal when every key of several is refused (the shop's problem, not a record's)."""
    try:
        return await fetch(list(keys)), []
    except error as exc:
        if not exc.refused:
            raise
        first = exc
    found: list[Any] = []
    refused: list[InvalidEventError] = []
    for key in keys:
        try:
            found.extend(await fetch([key]))
        except error as exc:
            if not exc.refused:
                raise
            refused.append(InvalidEventError(f"{where} {what} {key}", exc.reason))
    if len(refused) == len(keys) > 1:
        raise first
    return found, refused
