"""Scheduled reports: each `schedules:` entry of the sinks file, sent when its cron comes round
in its time zone, once across all workers.

Every worker ticks; for a schedule's latest due time (within `catch_up`), the first worker to
`SET NX` the Redis key of (schedule, due time) builds the report and sends it to each of its
sinks, marking each sink done. The lock expires (`lock_seconds`): if that worker dies or a sink
still fails after the retries, another worker takes the due time over and sends to the sinks
not yet marked, until `catch_up` has passed. So a report reaches each sink once, and is lost
only when every worker stays down (or the sink keeps failing) for all of `catch_up`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo

import httpx
from croniter import croniter
from redis.asyncio import Redis

from rules.alerts import Alert
from rules.scorecard import Scorecard
from sinks.config import ScheduleConfig
from sinks.load import SinksSetup
from sinks.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from sinks.route import routes_for
from streams.query import StateReader
from streams.reports.deliver import Rendered, report_sink, send_report

log = logging.getLogger(__name__)

SENT_TTL: Final = 40 * 86400  # seconds a sink's "sent" mark is kept: past any catch-up


@dataclass(frozen=True)
class Inputs:
    """What a report is built from: the whole state, the alerts, the scorecards."""

    reader: StateReader
    alerts: list[Alert]
    cards: Mapping[str, Scorecard]


# Reads the inputs for a report whose period ends with the given local day.
Source = Callable[[date], Awaitable[Inputs]]


class Marks(Protocol):
    async def set(self, key: str, value: str, *, nx: bool, ex: int) -> bool | None: ...
    async def exists(self, key: str) -> int: ...


class MemoryMarks:
    """One process's locks and marks (no Redis: a single worker, or tests)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._keys: dict[str, datetime] = {}
        self._clock = clock

    async def set(self, key: str, value: str, *, nx: bool, ex: int) -> bool | None:
        now = self._clock()
        if nx and key in self._keys and self._keys[key] > now:
            return None
        self._keys[key] = now + timedelta(seconds=ex)
        return True

    async def exists(self, key: str) -> int:
        return int(key in self._keys and self._keys[key] > self._clock())


def latest_due(schedule: ScheduleConfig, now: datetime) -> datetime | None:
    """The schedule's last due time at or before `now`, if within its catch-up time."""
    zone = ZoneInfo(schedule.timezone)
    # From a second past `now`: a due time of exactly `now` counts.
    due: datetime = croniter(schedule.cron, now.astimezone(zone) + timedelta(seconds=1)).get_prev(
        datetime
    )
    if (now - due).total_seconds() > schedule.catch_up:
        return None
    return due


def report_day(schedule: ScheduleConfig, due: datetime) -> date:
    """The last whole local day before the due time: a 09:00 report covers yesterday."""
    return due.astimezone(ZoneInfo(schedule.timezone)).date() - timedelta(days=1)


class Scheduler:
    def __init__(
        self,
        setup: SinksSetup,
        source: Source,
        client: httpx.AsyncClient,
        *,
        redis: Redis | None = None,
        namespace: str = "kpiwatch:",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lock_seconds: int = 300,
        every: float = 20.0,
    ) -> None:
        self.every = every
        self._setup = setup
        self._source = source
        self._client = client
        self._marks: Marks = redis if redis is not None else MemoryMarks(clock)  # type: ignore[assignment]
        self._limiter: Limiter = (
            RedisLimiter(redis, namespace) if redis is not None else MemoryLimiter()
        )
        self._namespace = namespace
        self._clock = clock
        self._lock_seconds = lock_seconds
        self._id = uuid.uuid4().hex
        self._configs = {c.name: c for c in setup.sinks}

    def targets(self, schedule: ScheduleConfig) -> list[str]:
        """The schedule's sinks, or those the routing tree gives its labels."""
        if schedule.sinks:
            return list(dict.fromkeys(schedule.sinks))
        labels = {"team": schedule.team, "report": schedule.name}
        names = [n for route in routes_for(self._setup.route, labels) for n in route.sinks]
        return list(dict.fromkeys(names))

    async def run(self) -> None:
        """Tick every `every` seconds until cancelled; a failing tick is logged, the next one
        tries again. (No parameters: Faust passes the app to a task function that has one.)"""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("scheduled reports: tick failed")
            await asyncio.sleep(self.every)

    async def tick(self) -> list[str]:
        """Send what is due and not yet sent; returns `schedule@due -> sink` of each send."""
        now = self._clock()
        sent = []
        for schedule in self._setup.schedules:
            due = latest_due(schedule, now)
            if due is not None:
                sent.extend(await self._due(schedule, due))
        return sent

    async def _due(self, schedule: ScheduleConfig, due: datetime) -> list[str]:
        key = f"{self._namespace}report:{schedule.name}:{due.isoformat()}"
        pending = [n for n in self.targets(schedule) if not await self._marks.exists(f"{key}:{n}")]
        if not pending:
            return []
        if not await self._marks.set(f"{key}:lock", self._id, nx=True, ex=self._lock_seconds):
            return []  # another worker has it
        rendered = await self._render(schedule, due)
        sent = []
        for name in pending:
            if await self._send(name, rendered):
                await self._marks.set(f"{key}:{name}", self._id, nx=False, ex=SENT_TTL)
                sent.append(f"{schedule.name}@{due.isoformat()} -> {name}")
        return sent

    async def _render(self, schedule: ScheduleConfig, due: datetime) -> Rendered:
        day = report_day(schedule, due)
        inputs = await self._source(day)
        # Charts and tables take CPU: off the event loop, which keeps consuming meanwhile.
        return await asyncio.to_thread(render_for_sinks, inputs, schedule, day)

    async def _send(self, name: str, rendered: Rendered) -> bool:
        config = self._configs.get(name)
        if config is None:
            log.error("scheduled report %s: no sink named %r", rendered.title, name)
            return False
        try:
            sink = report_sink(config, rendered, self._client)
        except Exception as exc:
            log.error("scheduled report %s: %s", rendered.title, exc)
            return False
        failure = await send_report(
            sink, delivery=self._setup.delivery, limit=config.rate_limit, limiter=self._limiter
        )
        if failure is not None:
            log.error("scheduled report %s not sent to %s: %s", rendered.title, name, failure)
        return failure is None


def render_for_sinks(inputs: Inputs, schedule: ScheduleConfig, day: date) -> Rendered:
    from streams.reports.build import build_report
    from streams.reports.charts import charts
    from streams.reports.render import html_report, markdown

    report = build_report(
        inputs.reader, inputs.cards, inputs.alerts, schedule.team, schedule.period, day
    )
    pngs = charts(report)
    return Rendered(
        title=report.title,
        markdown=markdown(report),
        html=html_report(report, pngs, {name: f"cid:{name}" for name in pngs}),
        charts=pngs,
    )
