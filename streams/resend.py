"""`kpiwatch alerts resend`: deliver what the worker dead-lettered, once its sink is back.

It reads the alerts-dead-letter topic and sends each record's alerts through the sink (or the
sink in a language) that gave up on them, with the worker's own code: the sinks file, the retry
policy, the shared rate limit and the dedupe ledger in Redis. What it sends is tracked in Redis
twice: each alert's idempotency key goes into the ledger, as if the worker had sent it (workers
and later runs skip it), and the record is claimed as re-sent before it is sent (kept 30 days; a
claim is released if the send fails again, for the next run). Receivers that keep idempotency
keys drop anything that reached them before anyway (webhook alerts carry `key`).

A transition is not sent when a newer one of its fingerprint has already been delivered through
that sink: a firing would land after its own resolve. It is reported as superseded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis

from connectors.kafka import partition_count
from rules.alerts import Alert
from rules.fileconfig import UNITS
from sinks import http
from sinks.base import Sink
from sinks.config import Delivery, RateLimit
from sinks.deliver import attempt_delivery
from sinks.ledger import RedisLedger
from sinks.load import SinksSetup, load_setup_path
from sinks.notifier import lane_sink
from sinks.ratelimit import RedisLimiter
from sinks.registry import build
from sinks.silence import namespace
from sinks.webhook import WebhookSink
from streams.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC: Final = "alerts-dead-letter"
RESENT_TTL: Final = timedelta(days=30)


class Record(BaseModel):
    """One record of the alerts-dead-letter topic, as `streams.notify` writes it."""

    model_config = ConfigDict(extra="ignore")

    sink: str
    reason: str
    alerts: list[Alert]
    dead_lettered_at: AwareDatetime


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    record: Record
    digest: str  # of the record's bytes: names its "re-sent" mark

    def describe(self) -> str:
        at = self.record.dead_lettered_at.isoformat(timespec="seconds")
        return f"{self.record.sink} {self.partition}/{self.offset} ({at}: {self.record.reason})"


@dataclass
class Tally:
    records: int = 0
    sent: int = 0
    delivered_before: int = 0
    superseded: int = 0
    resent_before: int = 0
    failed: int = 0

    def summary(self, dry_run: bool) -> str:
        sent = "would send" if dry_run else "sent"
        return (
            f"{self.records} dead-letter record(s): {self.sent} alert(s) {sent}, "
            f"{self.delivered_before} already delivered, {self.superseded} superseded, "
            f"{self.resent_before} record(s) already re-sent, {self.failed} record(s) failed"
        )


async def read_dead_letters(
    bootstrap: str, topic: str, since: datetime | None = None
) -> list[DeadLetter]:
    """Every record on the topic up to its end when asked (dead-lettered at `since` or later),
    in topic order; a record that is not one is logged and left out."""
    partitions = await partition_count(bootstrap, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[DeadLetter] = []
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batches = await consumer.getmany(*left, timeout_ms=500)
            for tp, messages in batches.items():
                found += [d for m in messages if m.offset < ends[tp] and (d := _parse(m))]
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        return [d for d in found if since is None or d.record.dead_lettered_at >= since]
    finally:
        await consumer.stop()


def _parse(message: Any) -> DeadLetter | None:
    try:
        record = Record.model_validate_json(message.value)
    except ValidationError as exc:
        log.warning(
            "%s/%s/%s is not a dead-letter record, skipped: %s",
            message.topic,
            message.partition,
            message.offset,
            exc.errors(include_url=False)[:2],
        )
        return None
    digest = hashlib.sha256(message.value).hexdigest()[:32]
    return DeadLetter(message.partition, message.offset, record, digest)


class Resender:
    """Sends dead-lettered records again, each as one digest, and notes what it sent."""

    def __init__(
        self,
        find: Callable[[str], Sink | None],
        redis: Redis,
        prefix: str,
        delivery: Delivery,
        limits: dict[str, RateLimit],
        out: TextIO,
    ) -> None:
        self._find = find
        self._redis = redis
        self._namespace = namespace(prefix)
        self._ledger = RedisLedger(redis, self._namespace)
        self._limiter = RedisLimiter(redis, self._namespace)
        self._delivery = delivery
        self._limits = limits
        self._out = out
        self.tally = Tally()

    async def handle(self, dead: DeadLetter, *, dry_run: bool) -> None:
        self.tally.records += 1
        mark = f"{self._namespace}resent:{dead.digest}"
        if await self._redis.exists(mark):
            self.tally.resent_before += 1
            self._say("already re-sent", dead)
            return
        lane = dead.record.sink
        sink = self._find(lane)
        if sink is None:
            self.tally.failed += 1
            self._say("failed", dead, "no such sink in the sinks file or KPIWATCH_WEBHOOK_URL")
            return
        fresh, before, superseded = await self._sort(lane, dead.record.alerts)
        self.tally.delivered_before += before
        self.tally.superseded += superseded
        notes = _notes(before, superseded)
        if dry_run:
            self.tally.sent += len(fresh)
            self._say("would send", dead, f"{len(fresh)} alert(s){notes}")
            return
        # Claimed first: two runs at once never both send it.
        if not await self._redis.set(mark, _now(), nx=True, ex=RESENT_TTL):
            self.tally.resent_before += 1
            self._say("already re-sent", dead)
            return
        await self._send(mark, sink, lane, fresh, dead, notes)

    async def _sort(self, lane: str, alerts: Sequence[Alert]) -> tuple[list[Alert], int, int]:
        """The alerts to send, how many were delivered already, how many are superseded."""
        unsent = set(await self._ledger.unsent(lane, [a.key for a in alerts]))
        left = [a for a in alerts if a.key in unsent]
        newest = await self._ledger.newest(lane, sorted({a.fingerprint for a in left}))
        fresh = [a for a in left if a.at.timestamp() >= newest.get(a.fingerprint, float("-inf"))]
        return fresh, len(alerts) - len(left), len(left) - len(fresh)

    async def _send(
        self, mark: str, sink: Sink, lane: str, alerts: list[Alert], dead: DeadLetter, notes: str
    ) -> None:
        if alerts:
            failure = await attempt_delivery(
                sink,
                alerts,
                attempts=self._delivery.attempts,
                base_delay=self._delivery.base_delay,
                max_delay=self._delivery.max_delay,
                before_attempt=lambda: self._slot(sink.name),
            )
            if failure is not None:
                await self._redis.delete(mark)
                self.tally.failed += 1
                self._say("failed", dead, str(failure))
                return
            await self._ledger.record(lane, alerts, self._delivery.dedupe_window)
        self.tally.sent += len(alerts)
        self._say("sent", dead, f"{len(alerts)} alert(s){notes}")

    async def _slot(self, sink: str) -> None:
        limit = self._limits.get(sink)
        while limit is not None:
            wait = await self._limiter.try_acquire(sink, limit)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _say(self, verb: str, dead: DeadLetter, detail: str = "") -> None:
        print(f"{verb}: {dead.describe()}" + (f": {detail}" if detail else ""), file=self._out)


def _notes(before: int, superseded: int) -> str:
    notes = [f"{before} already delivered"] if before else []
    notes += [f"{superseded} superseded by a newer transition delivered"] if superseded else []
    return "".join(f", {note}" for note in notes)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def sink_lanes(
    settings: Settings, setup: SinksSetup | None, client: Any
) -> Callable[[str], Sink | None]:
    """The sinks a worker with these settings has (no console), found by lane name."""
    sinks: list[Sink] = [build(c, client) for c in setup.sinks] if setup is not None else []
    if settings.webhook_url is not None:
        sinks.append(WebhookSink(settings.webhook_url, client))
    return lane_sink(sinks, setup, client)


async def resend(
    settings: Settings,
    *,
    sink: str | None,
    since: datetime | None,
    dry_run: bool,
    out: TextIO,
) -> Tally:
    """Re-send what is on the alerts-dead-letter topic (of `sink` only, when given)."""
    if settings.redis_url is None:
        raise ValueError(
            "set KPIWATCH_REDIS_URL or pass --redis-url: resend needs the workers' Redis "
            "to know what they delivered"
        )
    setup = load_setup_path(settings.sinks_file) if settings.sinks_file is not None else None
    delivery = setup.delivery if setup is not None else Delivery()
    limits = {c.name: c.rate_limit for c in setup.sinks if c.rate_limit} if setup else {}
    topic = settings.topic(DEAD_LETTER_TOPIC)
    found = await read_dead_letters(settings.kafka_bootstrap, topic, since)
    chosen = [d for d in found if sink is None or d.record.sink.partition("/")[0] == sink]
    redis = Redis.from_url(settings.redis_url)
    try:
        async with http.new_client(delivery.timeout) as client:
            lanes = sink_lanes(settings, setup, client)
            resender = Resender(lanes, redis, settings.topic_prefix, delivery, limits, out)
            for dead in chosen:
                await resender.handle(dead, dry_run=dry_run)
            return resender.tally
    finally:
        await redis.aclose()


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `1d` (that long ago), or a time with its zone (2026-11-23T08:00:00+09:00)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match is not None:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(match[1]) * UNITS[match[2]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration (30m, 2h, 1d) or an ISO time"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"--since {text!r}: give the time zone (+08:00, Z)")
    return when
