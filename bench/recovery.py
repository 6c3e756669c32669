"""Recovery time: a worker holding `--keys` table keys is killed and restarted; seconds until it
processes new events (the aim: 1M keys, under 60 s).

One run, one broker, fresh topics `<prefix>...` and a fresh worker app id:
  build    - the state a worker would hold after `--hours` hours of orders (`--orders` per store
             and local hour, from as many stores as make `--keys` keys), made in this process by
             the engine's own code and not through Kafka: per partition a
             streams.pipeline.Pipeline fed the stores the default partitioner sends there,
             each batch written by streams.durable.write_batch and marked sent, as the worker
             does; per rollup partition a RollupPipeline fed the batches' rollup messages. What
             the two changelog topics would hold once compacted (the last value of each key,
             in the order written) is kept. The markers' input positions say what the state
             holds of the (empty) input topics: nothing, read on from offset 0.
  estimate - what kpiwatch itself does on a partition's first batch after a start, timed in
             this process over the same keys in one dict (as the Faust table holds them):
             streams.durable.recover, then one new order (the index scan, silence judged for
             the partition's stores at the new hour).
  load     - those records written to `<app id>-state-changelog` and
             `<app id>-rollup-state-changelog` (compacted, `--partitions` partitions) at the
             partition each key names; the input topics created empty.
  floor    - a plain aiokafka consumer reads both changelogs into a dict: the least a recovery
             of them costs in Python.
  start    - `kpiwatch worker` started; from then on, live traffic: one new order per
             partition every `--every` s (in the hour after the state's last) until /stats
             counts the first. Timed from process start: Faust's log lines (group joined,
             changelogs read, "Worker ready"), the first new event counted, every new event
             counted, and their batches done (rollup messages applied); new events produced
             and counted, skipped as held, and the worker's "reading again" gap warnings.
  kill -9  - `--settle` seconds later the worker is SIGKILLed (by its PID); its committed input
             offsets are printed; it is started again with the same app id (same consumer
             group and changelogs, which now hold the first start's writes too); the same
             live traffic, the same figures.
Every figure is printed, none asserted; topics are deleted at the end (`--keep-topics` keeps
them).

Usage:
  .venv/bin/python bench/recovery.py [--keys 1000000] [--broker HOST:PORT] [--partitions 4]
      [--hours 480] [--orders 1] [--every 1] [--instance-id ID] [--settle 3]
      [--catch-up 60] [--timeout 900] [--source DIR] [--log-dir DIR] [--keep-topics]
Broker defaults to KPIWATCH_KAFKA_BOOTSTRAP; start one with deploy/services.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from kafka_throughput import (
    _cpu_seconds,
    _free_port,
    _rss_mib,
    _stats,
    _stop,
    add_run_options,
    add_worker_options,
    exit_on_sigterm,
    reader,
)

from connectors.kafka import ensure_topics
from connectors.simulator import MARKETS
from rules.load import RuleSet, load_default
from streams.durable import mark_sent, recover, write_batch
from streams.events import EVENTS_TOPIC, Money, OrderEvent, OrderLine, encode
from streams.faststore import LOADING
from streams.kpi import Stores
from streams.pipeline import Message, Pipeline
from streams.reference import Reference
from streams.rollup import RollupPipeline
from streams.settings import Settings
from streams.state import DEFAULT_CACHE_BYTES, RS, StateStore
from streams.worker import WORKER_TOPICS, changelog_topics

REPO = Path(__file__).resolve().parent.parent
START: Final = datetime(2026, 1, 5, tzinfo=UTC)
BATCH_MESSAGES: Final = 1000  # streams.app.BATCH_MESSAGES: what the worker takes at once
SKUS: Final = 10  # per store
SAMPLE_EVERY_S: Final = 0.2
PROGRESS_EVERY_S: Final = 10.0
# Log lines that mark the steps of a start, in the order they come.
# A mark is stamped at the first line holding any of its needles: streams.faststore's lines
# (its state changelog is read first, then the small rollup one) or Faust's own recovery's
# (a `--source` tree from before streams/faststore.py).
MARKS: Final = (
    ("Faust starting", ("[^Worker]: Starting",)),
    ("group joined", ("Joined group",)),
    ("changelogs: reading", (LOADING, "Restoring state from changelog topics")),
    ("changelogs: read", (" record(s) of partition(s) ", "Done reading from changelog topics")),
    ("Faust: Worker ready", ("Worker ready",)),
)
# The worker's warning that a message it read comes after one its state is missing
# (streams.app.Inputs): it reads again from the state's position.
GAP: Final = "reading again"
# ... and that it gave up waiting for the missing messages and went on past them.
GONE: Final = "are gone from the topic"
# Log lines after which a start will not go on by itself.
FAILURES: Final = ("Unexpected error in coordinator routine",)
LOG_TIME = re.compile(rb"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")


# ---------------------------------------------------------------- the state


class Compacted:
    """A streams.durable.Changelog that keeps what a compacted changelog topic ends up with:
    per partition, the last value of each key, in the order they were last written."""

    def __init__(self) -> None:
        self.partitions: dict[int, dict[str, bytes | None]] = {}

    async def send(self, partition: int, key: str, value: bytes | None) -> None:
        held = self.partitions.setdefault(partition, {})
        held.pop(key, None)
        held[key] = value

    async def flush(self) -> None:
        return None

    def records(self) -> int:
        return sum(len(held) for held in self.partitions.values())

    def size(self) -> int:
        return sum(
            len(key) + len(value or b"")
            for held in self.partitions.values()
            for key, value in held.items()
        )

    def kinds(self) -> dict[str, int]:
        """Records per kind of key (h, d, a, meta, redo, sent, r, ...)."""
        found: dict[str, int] = {}
        for held in self.partitions.values():
            for key in held:
                kind = key.split(RS, 2)[1]
                found[kind] = found.get(kind, 0) + 1
        return found

    def table(self) -> dict[str, bytes]:
        """Every partition's keys in one dict, as the worker's Faust table holds them."""
        return {
            key: value
            for held in self.partitions.values()
            for key, value in held.items()
            if value is not None
        }


@dataclass(frozen=True)
class Store:
    number: int
    store_id: str
    partition: int
    template: OrderEvent
    lines: tuple[OrderLine, ...]


@dataclass
class Built:
    state: Compacted = field(default_factory=Compacted)
    rollups: Compacted = field(default_factory=Compacted)
    stores: list[Store] = field(default_factory=list)
    events: int = 0
    alerts: int = 0
    seconds: float = 0.0


def _stores(args: argparse.Namespace) -> list[Store]:
    """As many stores as make about `--keys` keys: per store an hour key per hour, and a day
    key per local day (the hours span one more day than they fill, in most zones)."""
    per_store = args.hours + math.ceil(args.hours / 24) + 1
    count = max(args.partitions, round(args.keys / per_store))
    partitions = list(range(args.partitions))
    stores = []
    for number in range(count):
        market = MARKETS[number % len(MARKETS)]
        store_id = f"{market.platform}-{market.marketplace.lower()}-{number:05d}"
        partition = DefaultPartitioner()(store_id.encode(), partitions, partitions)
        price = Money(amount=market.price, currency=market.currency)
        lines = tuple(
            OrderLine(sku=f"SKU-{number:05d}-{n:02d}", quantity=1, unit_price=price)
            for n in range(SKUS)
        )
        template = OrderEvent(
            event_id="template",
            occurred_at=START,
            platform=market.platform,
            marketplace=market.marketplace,
            store_id=store_id,
            order_id="template",
            status="placed",
            lines=[lines[0]],
        )
        stores.append(Store(number, store_id, partition, template, lines))
    return stores


def _order(store: Store, at: datetime, serial: int) -> OrderEvent:
    # model_copy skips validation: the template was validated and only ids and times change.
    return store.template.model_copy(
        update={
            "event_id": f"rec-{serial:010d}",
            "order_id": f"o-{serial:010d}",
            "occurred_at": at,
            "lines": [store.lines[serial % SKUS]],
        }
    )


def _hour_messages(args: argparse.Namespace, stores: list[Store], hour: int) -> Iterator[Message]:
    """One message per order: `--orders` orders per store in this hour, spread over it."""
    base = START + timedelta(hours=hour)
    for store in stores:
        for k in range(args.orders):
            minute = (store.number * 7 + k * 60 // args.orders) % 60
            serial = (store.number * args.hours + hour) * args.orders + k
            yield Message([_order(store, base + timedelta(minutes=minute), serial)])


class Builder:
    """The worker's two sides over dicts: a Pipeline per partition, a RollupPipeline per
    rollup partition, each batch written to a Compacted changelog as the worker writes it."""

    def __init__(self, args: argparse.Namespace, rules: RuleSet, built: Built) -> None:
        reference = Reference()
        stores = Stores(reference)
        cache = max(DEFAULT_CACHE_BYTES // args.partitions, 16 * 2**20)
        self.built = built
        self.prefix: str = args.prefix
        self.pipelines = [
            Pipeline(
                StateStore({}, cache),
                rules,
                reference,
                partition=p,
                rollup_partitions=args.partitions,
                stores=stores,
            )
            for p in range(args.partitions)
        ]
        self.rollups = [
            RollupPipeline(
                StateStore({}),
                rules,
                reference,
                partition=q,
                sources=args.partitions,
                idle_after=math.inf,
            )
            for q in range(args.partitions)
        ]

    async def hour(self, messages: dict[int, list[Message]]) -> None:
        sent: list[list[dict[str, Any]]] = [[] for _ in self.rollups]
        for partition, found in messages.items():
            for start in range(0, len(found), BATCH_MESSAGES):
                batch = found[start : start + BATCH_MESSAGES]
                for q, message in enumerate(await self.batch(partition, batch)):
                    sent[q].append(message)
        for q, rollup in enumerate(self.rollups):
            output = rollup.process(sent[q])
            alerts = [a.model_dump(mode="json") for a in output.alerts]
            await self._write(rollup, q, self.built.rollups, {"alerts": alerts})

    async def batch(self, partition: int, batch: list[Message]) -> list[dict[str, Any]]:
        pipeline = self.pipelines[partition]
        output = pipeline.process(batch)
        alerts = [a.model_dump(mode="json") for a in output.alerts]
        outputs = {"alerts": alerts, "rollups": output.rollups, "dead": []}
        await self._write(pipeline, partition, self.built.state, outputs)
        self.built.events += sum(len(m.events) for m in batch)
        return output.rollups

    async def _write(
        self,
        pipeline: Pipeline | RollupPipeline,
        partition: int,
        changelog: Compacted,
        outputs: dict[str, Any],
    ) -> None:
        meta = pipeline.state.meta()
        # What the state holds of its input topic: nothing (read on from offset 0).
        topic = EVENTS_TOPIC if isinstance(pipeline, Pipeline) else "rollups"
        meta["pos"] = {f"{self.prefix}{topic}": 0}
        await write_batch(pipeline.store, partition, changelog, meta, outputs)
        await mark_sent(pipeline.store, partition, changelog, meta["seq"])
        self.built.alerts += len(outputs["alerts"])


async def _build(args: argparse.Namespace) -> Built:
    built = Built(stores=_stores(args))
    builder = Builder(args, load_default(), built)
    by_partition = {
        p: [s for s in built.stores if s.partition == p] for p in range(args.partitions)
    }
    began = last = time.perf_counter()
    for hour in range(args.hours):
        messages = {p: list(_hour_messages(args, s, hour)) for p, s in by_partition.items()}
        await builder.hour(messages)
        if time.perf_counter() - last >= PROGRESS_EVERY_S:
            last = time.perf_counter()
            print(
                f"build: hour {hour + 1} / {args.hours}, {built.state.records():,} keys, "
                f"{built.events / (last - began):,.0f} events/s"
            )
    built.seconds = time.perf_counter() - began
    return built


# ---------------------------------------------------------------- kpiwatch's own first batch


class Discard:
    """A streams.durable.Changelog that writes nowhere (recovery rewrites nothing here)."""

    async def send(self, partition: int, key: str, value: bytes | None) -> None:
        return None

    async def flush(self) -> None:
        return None


async def _estimate(args: argparse.Namespace, built: Built) -> list[tuple[float, float]]:
    """Per partition: seconds of streams.durable.recover and of the first new batch, over one
    dict holding every partition's keys (what Processor.runner and the first batch do)."""
    table = built.state.table()
    rules = load_default()
    reference = Reference()
    stores = Stores(reference)
    found = []
    for partition in range(args.partitions):
        began = time.perf_counter()
        store = StateStore(table, max(DEFAULT_CACHE_BYTES // args.partitions, 16 * 2**20))
        await recover(store, partition, Discard())
        recovered = time.perf_counter()
        pipeline = Pipeline(
            store,
            rules,
            reference,
            partition=partition,
            rollup_partitions=args.partitions,
            stores=stores,
        )
        first = next(s for s in built.stores if s.partition == partition)
        pipeline.process([Message([_new_order(args, first, 0)])])
        pipeline.store.discard()
        found.append((recovered - began, time.perf_counter() - recovered))
    return found


def _new_order(args: argparse.Namespace, store: Store, start: int, round_: int = 0) -> OrderEvent:
    """A new order in the hour after the state's last: the start's half hour, one second on
    per round."""
    at = START + timedelta(hours=args.hours, minutes=1 + 30 * start, seconds=round_)
    return _order(store, at, 10**9 + (start * 10**4 + round_) * 10**4 + store.number)


# ---------------------------------------------------------------- Kafka


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        kafka_bootstrap=args.broker,
        topic_prefix=args.prefix,
        app_id=args.app_id,
        partitions=args.partitions,
    )


async def _load(args: argparse.Namespace, built: Built) -> None:
    settings = _settings(args)
    inputs = [settings.topic(name) for name in WORKER_TOPICS]
    await ensure_topics(args.broker, inputs, args.partitions)
    changelogs = changelog_topics(settings)
    await ensure_topics(args.broker, changelogs, args.partitions, compacted=True)
    producer = AIOKafkaProducer(
        bootstrap_servers=args.broker,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    began = time.perf_counter()
    try:
        for topic, changelog in zip(changelogs, (built.state, built.rollups), strict=True):
            await _write_changelog(producer, topic, changelog)
    finally:
        await producer.stop()
    print(
        f"load: {built.state.records() + built.rollups.records():,} records to "
        f"{', '.join(changelogs)} in {time.perf_counter() - began:.0f} s (not measured)"
    )


async def _write_changelog(producer: AIOKafkaProducer, topic: str, changelog: Compacted) -> None:
    pending: list[asyncio.Future[Any]] = []
    for partition, held in sorted(changelog.partitions.items()):
        for key, value in held.items():
            pending.append(await producer.send(topic, value, key=key.encode(), partition=partition))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
    await asyncio.gather(*pending)


class Feed:
    """Live traffic while the worker starts: one new order per partition every `--every`
    seconds (keyed by store id, as producers send them) until `stop`."""

    def __init__(self, args: argparse.Namespace, built: Built, start: int) -> None:
        self.args = args
        self.start = start
        self.stores = [
            next(s for s in built.stores if s.partition == p) for p in range(args.partitions)
        ]
        self.produced = 0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.args.broker, acks="all")
        await producer.start()
        try:
            for round_ in itertools.count():
                await self._round(producer, round_)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopped.wait(), self.args.every)
                if self.stopped.is_set():
                    return
        finally:
            await producer.stop()

    async def _round(self, producer: AIOKafkaProducer, round_: int) -> None:
        topic = f"{self.args.prefix}{EVENTS_TOPIC}"
        for partition, store in enumerate(self.stores):
            event = _new_order(self.args, store, self.start, round_)
            sent = await producer.send_and_wait(topic, encode(event), key=store.store_id.encode())
            self.produced += 1
            if sent.partition != partition:
                print(f"note: {store.store_id} is on partition {sent.partition}, not {partition}")


async def _changelog_records(args: argparse.Namespace) -> int:
    """Records in the changelog topics now (end offsets: what a recovery reads at most)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=args.broker, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = _changelog_partitions(args)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def _ceiling(args: argparse.Namespace) -> tuple[int, float]:
    """A plain aiokafka consumer reads both changelog topics to their end into one dict: the
    least any recovery of them costs in Python. Returns records and seconds."""
    partitions = _changelog_partitions(args)
    consumer = await reader(args.broker, partitions)
    try:
        ends = await consumer.end_offsets(partitions)
        waiting = {tp for tp in partitions if ends[tp] > 0}
        table: dict[bytes, bytes] = {}
        count, began = 0, time.perf_counter()
        while waiting and time.perf_counter() - began < args.timeout:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                table.update((m.key, m.value) for m in messages)
                count += len(messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    waiting.discard(tp)
        return count, time.perf_counter() - began
    finally:
        await consumer.stop()


def _changelog_partitions(args: argparse.Namespace) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p)
        for topic in changelog_topics(_settings(args))
        for p in range(args.partitions)
    ]


async def _committed(args: argparse.Namespace) -> str:
    """The worker's committed input offsets against the topics' end offsets, per topic."""
    settings = _settings(args)
    topics = [settings.topic(EVENTS_TOPIC), settings.topic("rollups")]
    admin = AIOKafkaAdminClient(bootstrap_servers=args.broker)
    consumer = AIOKafkaConsumer(bootstrap_servers=args.broker, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.topic(settings.app_id))
        partitions = [TopicPartition(t, p) for t in topics for p in range(args.partitions)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    found = []
    for topic in topics:
        held = sum(o.offset for tp, o in committed.items() if tp.topic == topic and o.offset > 0)
        end = sum(n for tp, n in ends.items() if tp.topic == topic)
        found.append(f"{topic.removeprefix(args.prefix)} {held}/{end}")
    return ", ".join(found)


async def _delete_topics(broker: str, prefix: str) -> None:
    """Every topic of this run (inputs, outputs, changelogs, Faust's own): those with its prefix."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        print(f"deleted {len(names)} topics with prefix {prefix!r}")
    finally:
        await admin.close()


# ---------------------------------------------------------------- the worker


@dataclass
class Start:
    """One start of the worker, seconds from its process start."""

    name: str
    records: int
    marks: dict[str, float] = field(default_factory=dict)
    first: float | None = None  # the first new event counted
    every: float | None = None  # every new event counted
    done: float | None = None  # and the batches' rollup messages applied
    produced: int = 0
    counted: int = 0
    skipped: int = 0
    gaps: int = 0  # "reading again": the worker found a message missing and read again
    gone: int = 0  # "gone from the topic": it gave up on them
    rss: float = 0.0
    peak: float = 0.0
    cpu: float = 0.0
    note: str = ""


def _worker_env(args: argparse.Namespace, port: int, data_dir: Path) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KPIWATCH_")},
        "KPIWATCH_KAFKA_BOOTSTRAP": args.broker,
        "KPIWATCH_TOPIC_PREFIX": args.prefix,
        "KPIWATCH_APP_ID": args.app_id,
        "KPIWATCH_PARTITIONS": str(args.partitions),
        "KPIWATCH_WEB_PORT": str(port),
        "KPIWATCH_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(args.source.resolve()),
    }
    if args.instance_id:
        env["KPIWATCH_INSTANCE_ID"] = args.instance_id
    return env


def _spawn(
    args: argparse.Namespace, name: str, port: int, data_dir: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = args.log_dir / f"{name}.log"
    command = [sys.executable, "-m", "streams.cli", "worker", "--no-console"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=args.source,
            env=_worker_env(args, port, data_dir),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    print(f"{name}: started pid {process.pid} (port {port}, log {log_path})")
    return process, log_path


async def _follow(
    args: argparse.Namespace,
    built: Built,
    start: Start,
    number: int,
    process: subprocess.Popen[bytes],
    log_path: Path,
    port: int,
    clocks: tuple[float, float],
) -> None:
    feed = Feed(args, built, number)
    feeding = asyncio.create_task(feed.run())
    try:
        await _watch(args, start, feed, feeding, process, log_path, port, clocks)
    finally:
        feed.stopped.set()
        await feeding
        start.produced = feed.produced


async def _watch(
    args: argparse.Namespace,
    start: Start,
    feed: Feed,
    feeding: asyncio.Task[None],
    process: subprocess.Popen[bytes],
    log_path: Path,
    port: int,
    clocks: tuple[float, float],
) -> None:
    began_wall, began = clocks  # time.time(), time.monotonic() at the process start
    offset = 0
    async with httpx.AsyncClient(timeout=5.0) as client:
        while (now := time.monotonic() - began) < args.timeout:
            if process.poll() is not None:
                start.note = f"exited with {process.returncode}; see {log_path}"
                return
            await asyncio.sleep(SAMPLE_EVERY_S)
            offset = _read_marks(log_path, offset, began_wall, start)
            if start.note:
                return
            if start.first is not None and now - start.first > args.catch_up:
                start.note = f"not every new event counted {args.catch_up:.0f} s after the first"
                return
            found = await _stats(client, port)
            produced = feed.produced if feeding.done() else None
            if found is not None and _progress(start, feed, found, now, produced):
                start.rss, start.peak = _rss_mib(process.pid), _peak_mib(process.pid)
                start.cpu = _cpu_seconds(process.pid)
                _read_marks(log_path, offset, began_wall, start)
                return
    start.note = f"timed out after {args.timeout:.0f} s; see {log_path}"


def _progress(
    start: Start, feed: Feed, found: dict[str, float], at: float, produced: int | None
) -> bool:
    """Record what /stats shows (the feed stops at the first new event counted); True once
    every new event is counted and the batches are done (their rollup messages applied).
    `produced` is None while the feed still runs."""
    start.counted = int(found.get("kpiwatch_events_in_total", 0))
    start.skipped = int(found.get("kpiwatch_messages_skipped_total", 0))
    if start.counted >= 1 and start.first is None:
        start.first = at
        feed.stopped.set()
    if produced is not None and start.counted >= produced and start.every is None:
        start.every = at
    sent = found.get("kpiwatch_kafka_messages_written_total:rollups", 0.0)
    applied = sum(v for k, v in found.items() if k.startswith("kpiwatch_rollup_messages_total"))
    if start.every is not None and sent > 0 and applied >= sent:
        start.done = at
        return True
    return False


def _read_marks(log_path: Path, offset: int, began_wall: float, start: Start) -> int:
    """Stamp the marks first seen in the log since `offset` with their logged time."""
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        text = log_file.read()
    end = text.rfind(b"\n") + 1
    for line in text[:end].splitlines():
        start.gaps += int(GAP.encode() in line)
        start.gone += int(GONE.encode() in line)
        if not start.note and any(needle.encode() in line for needle in FAILURES):
            start.note = f"gave up: {line.decode(errors='replace').strip()}"
        for label, needles in MARKS:
            if label not in start.marks and any(n.encode() in line for n in needles):
                start.marks[label] = _logged_at(line, began_wall)
    return offset + end


def _logged_at(line: bytes, began_wall: float) -> float:
    """Seconds from process start to a log line's own time (else to now)."""
    match = LOG_TIME.match(line)
    if match is None:
        return time.time() - began_wall
    seconds = time.mktime(time.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S"))
    return seconds + int(match.group(2)) / 1000 - began_wall


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _run_start(
    args: argparse.Namespace, built: Built, name: str, number: int, data_dir: Path, port: int
) -> tuple[Start, subprocess.Popen[bytes]]:
    records = asyncio.run(_changelog_records(args))
    start = Start(name, records)
    clocks = (time.time(), time.monotonic())
    process, log_path = _spawn(args, name.replace(" ", "-"), port, data_dir)
    try:
        asyncio.run(_follow(args, built, start, number, process, log_path, port, clocks))
    except BaseException:
        _stop(name, process)  # interrupted: leave no worker behind
        raise
    return start, process


def _kill(name: str, process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker we started, by its PID."""
    process.kill()
    process.wait()
    print(f"{name}: killed with SIGKILL (pid {process.pid}, exit {process.returncode})")


# ---------------------------------------------------------------- main


def main() -> None:
    exit_on_sigterm()
    args = _parser().parse_args()
    if not args.broker:
        sys.exit("no broker: pass --broker or set KPIWATCH_KAFKA_BOOTSTRAP")
    args.log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kpiwatch-recovery-"))
    args.log_dir.mkdir(parents=True, exist_ok=True)
    print(f"broker {args.broker}, prefix {args.prefix!r}, app id {args.app_id!r}")
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
        f"python {sys.version.split()[0]}"
    )
    built = asyncio.run(_build(args))
    _print_built(args, built)
    estimate = asyncio.run(_estimate(args, built))
    gc.collect()
    starts: list[Start] = []
    data_dir = Path(tempfile.mkdtemp(prefix="kpiwatch-recovery-data-"))
    try:
        asyncio.run(_load(args, built))
        ceiling = asyncio.run(_ceiling(args))
        _starts(args, built, data_dir, starts)
    finally:
        if not args.keep_topics:
            asyncio.run(_delete_topics(args.broker, args.prefix))
        shutil.rmtree(data_dir, ignore_errors=True)
    _report(args, built, estimate, ceiling, starts)


def _starts(args: argparse.Namespace, built: Built, data_dir: Path, starts: list[Start]) -> None:
    """First start; kill -9; start again; stop. Both starts have the same settings, web port
    included (with static membership, Faust's assignor asserts that a member's URL did not
    change, and a worker back on another port hangs)."""
    port = _free_port()
    first, process = _run_start(args, built, "start 1", 0, data_dir, port)
    starts.append(first)
    if process.poll() is None:
        time.sleep(args.settle)
        _kill("start 1", process)
    committed = asyncio.run(_committed(args))
    print(f"committed input offsets / end offsets after the kill: {committed}")
    second, process = _run_start(args, built, "start 2 after kill -9", 1, data_dir, port)
    starts.append(second)
    _stop("start 2", process)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=1_000_000, help="about this many state keys")
    run = uuid.uuid4().hex[:8]
    add_run_options(parser, run)
    parser.add_argument("--app-id", default=f"recovery-{run}", help="KPIWATCH_APP_ID")
    parser.add_argument(
        "--hours", type=int, default=480, help="hours of orders (under 63 days: none expire)"
    )
    parser.add_argument("--orders", type=int, default=1, help="orders per store and local hour")
    parser.add_argument(
        "--instance-id", help="KPIWATCH_INSTANCE_ID: static membership (default: none)"
    )
    parser.add_argument(
        "--every", type=float, default=1.0, help="seconds between new orders (one per partition)"
    )
    parser.add_argument(
        "--catch-up",
        type=float,
        default=60.0,
        help="give up when the new events are not all counted this long after the first",
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds between start 1's work done and kill -9"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on a start after (s)")
    add_worker_options(parser)
    return parser


def _print_built(args: argparse.Namespace, built: Built) -> None:
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(built.state.kinds().items()))
    print(
        f"build: {built.events:,} orders of {len(built.stores):,} stores x {args.hours} h in "
        f"{built.seconds:.0f} s (not measured), {built.alerts:,} alert transitions"
    )
    print(
        f"state changelog: {built.state.records():,} keys ({kinds}), "
        f"{built.state.size() / 2**20:.0f} MiB of keys and values; "
        f"rollup-state changelog: {built.rollups.records():,} keys"
    )


def _report(
    args: argparse.Namespace,
    built: Built,
    estimate: list[tuple[float, float]],
    ceiling: tuple[int, float],
    starts: list[Start],
) -> None:
    print()
    print(
        f"{built.state.records() + built.rollups.records():,} table keys "
        f"({len(built.stores):,} stores x {args.hours} h, {args.orders} order(s) per store-hour), "
        f"{args.partitions} partitions, {os.cpu_count()} cores"
    )
    recovered = sum(r for r, _ in estimate)
    batches = sum(b for _, b in estimate)
    print(
        f"kpiwatch's first batch per partition, in-process estimate: recover {recovered:.1f} s "
        f"+ first batch {batches:.1f} s over {args.partitions} partitions "
        f"({', '.join(f'{r:.1f}+{b:.1f}' for r, b in estimate)})"
    )
    records, seconds = ceiling
    print(
        f"plain aiokafka consumer reading the changelogs into a dict (the floor): {records:,} "
        f"records in {seconds:.1f} s, {records / seconds if seconds else 0:,.0f} records/s"
    )
    labels = [label for label, _ in MARKS]
    print(f"{'seconds from process start':<30}" + "".join(f"{s.name:>24}" for s in starts))
    rows: list[tuple[str, list[float | None]]] = [
        ("changelog records", [float(s.records) for s in starts]),
        *((label, [s.marks.get(label) for s in starts]) for label in labels),
        ("first new event counted", [s.first for s in starts]),
        ("every new event counted", [s.every for s in starts]),
        ("their batches done", [s.done for s in starts]),
        ("worker RSS MiB then", [s.rss for s in starts]),
    ]
    for label, values in rows:
        print(f"{label:<30}" + "".join(_cell(label, v) for v in values))
    for s in starts:
        reading = s.marks.get("changelogs: read", 0.0) - s.marks.get("changelogs: reading", 0.0)
        if reading > 0:
            print(
                f"{s.name}: the state changelog read in {reading:.1f} s, "
                f"{s.records / reading:,.0f} records/s"
            )
        print(
            f"{s.name}: produced {s.produced} new events, counted {s.counted}, skipped "
            f"{s.skipped} messages as held, {s.gaps} 'reading again' gap(s), {s.gone} "
            f"'gone from the topic'; peak RSS "
            f"{s.peak:.0f} MiB, CPU {s.cpu:.0f} s{'; ' + s.note if s.note else ''}"
        )
    produced = sum(s.produced for s in starts)
    counted = sum(s.counted for s in starts)
    print(
        f"new events over both starts: {produced} produced, {counted} counted "
        f"({produced - counted} never counted; a start counts what an earlier one left unread)"
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process (build, estimate, load): peak RSS {own:,.0f} MiB")
    load1, load5, _ = os.getloadavg()
    print(f"machine load average at the end: {load1:.1f} (1 min), {load5:.1f} (5 min)")


def _cell(label: str, value: float | None) -> str:
    if value is None:
        return f"{'-':>24}"
    if label == "changelog records":
        return f"{value:>24,.0f}"
    return f"{value:>24.1f}"


if __name__ == "__main__":
    main()
