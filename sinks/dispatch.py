"""From alert transitions to notifications: mute -> route -> group -> dedupe -> rate-limit ->
retry -> record, or dead-letter (Alertmanager's notification pipeline, in small stages).

Every sink (in each language a route asks for) has its own lane: a queue and a task. A sink that
is down holds up only its own lane; what queues behind it, or behind its rate limit, is merged
into the next digest rather than dropped. A submitted alert is `done` (its Kafka offset may be
committed) only once every lane it was routed to has delivered or dead-lettered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis.exceptions import RedisError

from rules.alerts import Alert
from sinks.base import Sink
from sinks.config import Delivery, Mention, RateLimit
from sinks.deliver import attempt_delivery
from sinks.group import Batch, Grouper
from sinks.ledger import Ledger, MemoryLedger
from sinks.ratelimit import Limiter, MemoryLimiter, OwnSends
from sinks.render import Language
from sinks.route import Route, route_labels, routes_for

log = logging.getLogger(__name__)

DeadLetter = Callable[[str, Sequence[Alert], str], Awaitable[None]]
# Sent alerts a lane keeps in memory while Redis cannot record them (the oldest go first).
MAX_UNRECORDED = 100_000
# The sink for a lane: in a route's language, @-ing a route's people (None: the sink itself).
Variant = Callable[[str, Language | None, Mention | None], Sink | None]


class Mute(Protocol):
    async def muted(self, alert: Alert, labels: Mapping[str, str]) -> bool:
        """True when a silence or an acknowledgement holds this alert back."""


class Observer(Protocol):
    """Where the dispatcher reports what happened (Prometheus in the worker)."""

    def delivered(self, lane: str, alerts: int, seconds: float) -> None: ...
    def dead_lettered(self, lane: str, alerts: int) -> None: ...
    def deduplicated(self, lane: str, alerts: int) -> None: ...
    def muted(self, alert: Alert) -> None: ...
    def retried(self, lane: str, alerts: int) -> None: ...
    def rate_limited(self, lane: str, seconds: float) -> None: ...


class NullObserver:
    def delivered(self, lane: str, alerts: int, seconds: float) -> None:
        pass

    def dead_lettered(self, lane: str, alerts: int) -> None:
        pass

    def deduplicated(self, lane: str, alerts: int) -> None:
        pass

    def muted(self, alert: Alert) -> None:
        pass

    def retried(self, lane: str, alerts: int) -> None:
        pass

    def rate_limited(self, lane: str, seconds: float) -> None:
        pass


async def _log_dead_letter(lane: str, alerts: Sequence[Alert], reason: str) -> None:
    log.error("dead-lettered %d alert(s) for %s: %s", len(alerts), lane, reason)


@dataclass
class Ticket:
    """One submitted alert, done when each of its `remaining` deliveries has finished."""

    done: Callable[[], object] | None
    remaining: int

    def release(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and self.done is not None:
            self.done()


@dataclass(frozen=True)
class Job:
    alerts: tuple[Alert, ...]
    tickets: tuple[Ticket, ...]


@dataclass
class Stages:
    """What every lane shares: the policy and the shared state behind dedupe and rate limits."""

    delivery: Delivery
    ledger: Ledger = field(default_factory=MemoryLedger)
    limiter: Limiter = field(default_factory=MemoryLimiter)
    own_sends: OwnSends = field(default_factory=OwnSends)
    dead_letter: DeadLetter = _log_dead_letter
    observer: Observer = field(default_factory=NullObserver)
    max_batch: int = 50


class Lane:
    """One sink in one language: its queue, its task, its rate limit."""

    def __init__(self, name: str, sink: Sink, limit: RateLimit | None, stages: Stages) -> None:
        self.name = name
        self.sink = sink
        self.limit = limit
        self.stages = stages
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._have_slot = False
        # Sent while the ledger (Redis) was unreachable: written to it once it answers again,
        # and until then this lane's own memory of what it sent.
        self._unrecorded: dict[str, Alert] = {}

    async def run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            # Wait for a slot first: whatever queues meanwhile joins this digest.
            await self._slot()
            self._have_slot = True
            jobs += self._drain(len(jobs[0].alerts))
            await self._send(jobs)

    async def _slot_per_attempt(self) -> None:
        """The first attempt uses the slot taken before the digest was made; retries take
        their own, so a robot that answered 429 is not hit again past its limit."""
        if self._have_slot:
            self._have_slot = False
        else:
            await self._slot()

    async def _slot(self) -> None:
        name = self.sink.name
        while self.limit is not None:
            wait = self.stages.own_sends.wait(name, self.limit)
            if wait <= 0:
                wait = await self._shared_slot()
            if wait <= 0:
                self.stages.own_sends.note(name)
                return
            self.stages.observer.rate_limited(self.name, wait)
            await asyncio.sleep(wait)

    async def _shared_slot(self) -> float:
        if self.limit is None:
            return 0.0
        try:
            return await self.stages.limiter.try_acquire(self.sink.name, self.limit)
        except RedisError as exc:
            # Without the shared window, this worker's own count is what holds the limit.
            log.warning("rate limit of %s unknown (%s); counting this worker's own", self.name, exc)
            return 0.0

    def _drain(self, count: int) -> list[Job]:
        jobs = []
        while not self.queue.empty() and count < self.stages.max_batch:
            job = self.queue.get_nowait()
            jobs.append(job)
            count += len(job.alerts)
        return jobs

    async def _send(self, jobs: Sequence[Job]) -> None:
        alerts = list({a.key: a for job in jobs for a in job.alerts}.values())
        fresh = await self._unsent(alerts)
        delivered = not fresh or await self._deliver(fresh)
        if not fresh:
            self.stages.observer.deduplicated(self.name, len(alerts))
        if delivered:
            for ticket in (t for job in jobs for t in job.tickets):
                ticket.release()

    async def _unsent(self, alerts: Sequence[Alert]) -> list[Alert]:
        try:
            await self._write_unrecorded()
            keys = set(await self.stages.ledger.unsent(self.name, [a.key for a in alerts]))
        except RedisError as exc:
            # At least once: a possible duplicate beats a possible loss.
            log.warning("dedupe ledger unavailable for %s (%s)", self.name, exc)
            return [a for a in alerts if a.key not in self._unrecorded]
        return [a for a in alerts if a.key in keys]

    async def _deliver(self, alerts: Sequence[Alert]) -> bool:
        """Send or dead-letter; False only when neither worked (the alerts stay unacked)."""
        policy = self.stages.delivery
        started = time.monotonic()
        tries = 0

        async def before_attempt() -> None:
            nonlocal tries
            tries += 1
            if tries > 1:
                self.stages.observer.retried(self.name, len(alerts))
            await self._slot_per_attempt()

        try:
            failure = await attempt_delivery(
                self.sink,
                alerts,
                attempts=policy.attempts,
                base_delay=policy.base_delay,
                max_delay=policy.max_delay,
                before_attempt=before_attempt,
            )
            reason = None if failure is None else str(failure)
        except Exception as exc:  # a bug in one sink must not stop its lane
            log.exception("sink %s failed unexpectedly", self.name)
            reason = f"sink raised {type(exc).__name__}"
        if reason is None:
            self.stages.observer.delivered(self.name, len(alerts), time.monotonic() - started)
            await self._record(alerts)
            return True
        return await self._dead_letter(alerts, reason)

    async def _record(self, alerts: Sequence[Alert]) -> None:
        self._unrecorded.update((a.key, a) for a in alerts)
        try:
            await self._write_unrecorded()
        except RedisError as exc:
            log.warning(
                "could not record %d sent alert(s) for %s yet: %s",
                len(self._unrecorded),
                self.name,
                exc,
            )
            for key in list(self._unrecorded)[: max(0, len(self._unrecorded) - MAX_UNRECORDED)]:
                del self._unrecorded[key]

    async def _write_unrecorded(self) -> None:
        if self._unrecorded:
            alerts = list(self._unrecorded.values())
            await self.stages.ledger.record(self.name, alerts, self.stages.delivery.dedupe_window)
            self._unrecorded.clear()

    async def _dead_letter(self, alerts: Sequence[Alert], reason: str) -> bool:
        try:
            await self.stages.dead_letter(self.name, alerts, reason)
        except Exception:
            log.exception("could not dead-letter %d alert(s) for %s", len(alerts), self.name)
            return False
        self.stages.observer.dead_lettered(self.name, len(alerts))
        return True


def lane_name_of(sink: str, language: Language | None, route_id: str | None) -> str:
    """`sink`, `sink/zh`, `sink/#0.1` or `sink/zh#0.1` (the sink, then `/`, as dead-letter
    filters expect): dedupe keys and dead-letters use it."""
    if route_id is not None:
        return f"{sink}/{language or ''}#{route_id}"
    return sink if language is None else f"{sink}/{language}"


class Dispatcher:
    """Takes alert transitions in, hands digests to lanes; `run()` is its clock."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        route: Route,
        stages: Stages,
        *,
        limits: Mapping[str, RateLimit] | None = None,
        variant: Variant | None = None,
        mute: Mute | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sinks = dict(sinks)
        self._route = route
        self._stages = stages
        self._limits = dict(limits or {})
        self._variant = variant
        self._mute = mute
        self._clock = clock
        self._grouper = Grouper(clock)
        self._waiting: dict[tuple[str, str], list[Ticket]] = {}
        self._lanes: dict[tuple[str, Language | None, str | None], Lane] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._open = 0

    async def submit(self, alert: Alert, done: Callable[[], object] | None = None) -> None:
        labels = route_labels(alert)
        # `alert.muted`: the rule's own mute calendar; recorded, never sent to a person.
        if alert.muted or (self._mute is not None and await self._mute.muted(alert, labels)):
            self._stages.observer.muted(alert)
            if done is not None:
                done()
            return
        routes = [r for r in routes_for(self._route, labels) if r.sinks]
        ticket = Ticket(self._finisher(done), sum(len(r.sinks) for r in routes))
        self._open += 1
        if ticket.remaining == 0:
            ticket.remaining = 1
            ticket.release()
        for route in routes:
            key = self._grouper.add(route, alert, labels)
            self._waiting.setdefault((key, alert.key), []).append(ticket)
        self._wake.set()

    def _finisher(self, done: Callable[[], object] | None) -> Callable[[], None]:
        def finish() -> None:
            self._open -= 1
            if done is not None:
                done()

        return finish

    def start(self) -> None:
        """Run the group clock in the background (`close` stops it and every lane)."""
        self._tasks.append(asyncio.create_task(self.run(), name="dispatcher clock"))

    async def run(self) -> None:
        """Flush groups when due, for ever (cancel to stop; unfinished alerts stay unacked)."""
        while True:
            self._wake.clear()
            due = self._grouper.next_due()
            timeout = None if due is None else max(0.0, due - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._enqueue(self._grouper.due())

    def _enqueue(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            tickets = tuple(
                t for a in batch.alerts for t in self._waiting.pop((batch.key, a.key), [])
            )
            for name in batch.route.sinks:
                lane = self._lane(name, batch.route)
                lane.queue.put_nowait(Job(batch.alerts, tickets))

    def _lane(self, name: str, route: Route) -> Lane:
        language, mention = route.language, route.mention
        # A route with its own mentions has its own lanes (named `sink/language#route`).
        key = (name, language, route.id if mention is not None else None)
        lane = self._lanes.get(key)
        if lane is None:
            sink = self._sinks[name]
            if (language is not None or mention is not None) and self._variant is not None:
                sink = self._variant(name, language, mention) or sink
            lane_name = lane_name_of(name, language, key[2])
            lane = Lane(lane_name, sink, self._limits.get(name), self._stages)
            self._lanes[key] = lane
            self._tasks.append(asyncio.create_task(lane.run(), name=f"lane {lane_name}"))
        return lane

    @property
    def pending(self) -> int:
        """Submitted alert transitions not yet delivered or dead-lettered on every lane."""
        return self._open

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        lanes = [lane.sink for lane in self._lanes.values()]
        sinks = {id(s): s for s in [*self._sinks.values(), *lanes]}
        self._lanes.clear()
        for sink in sinks.values():
            close = getattr(sink, "close", None)  # a sink with work of its own (re-posts)
            if close is not None:
                await close()
