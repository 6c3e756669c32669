"""Kafka runtime latency: event produced -> alert on the alerts topic, p50 and p99, two situations.

One run, one broker, one `kpiwatch worker` (fresh topics `<prefix>...`, fresh app id):
  calibration - a backlog of `--calibration` simulated events (orders, ad reports, stock
                snapshots of `--stores` stores, packed per store as `kpiwatch produce` sends
                them) is on the events topic when the worker starts; its events/s over the
                drain, from /stats samples as in kafka_throughput.py, is the worker's maximum;
  steady      - the worker caught up, simulated traffic is produced in real time at `--share`
                (half) of that maximum for `--seconds`, and probes are measured (below);
  backlog     - `--backlog` events are produced at once; as soon as the worker has counted
                every one of them (/stats `kpiwatch_events_in_total`), the same steady phase
                runs again and is measured.
A probe is one message holding one stock snapshot of a SKU never seen before, with nothing
available, of a store of its own (`latency-probe`, amazon US): the rule `stockout`
(rules/library/default.yaml, `available < 1` is critical) fires for it on that one snapshot.
`--probe-rate` probes a second; the wall clock (time.time) is read just before each is sent,
and again when a consumer of `<prefix>alerts` (no group, every partition, from the end) gets
its firing alert: the latency. A probe with no alert within `--alert-timeout` is missed and
counts as infinitely late in the percentiles (and is listed: it must not vanish from them).
Also shown, to tell where time goes: the alert record's timestamp (set by the worker's producer
when it sent the alert) minus the send time, the probe's own acknowledgement time, and the
worker's CPU share. Benchmarks print; the aim (p99 < 500 ms) is reported, never asserted.

Usage:
  .venv/bin/python bench/latency.py [--seconds 60] [--backlog 100000] [--calibration 50000]
      [--share 0.5] [--probe-rate 5] [--broker HOST:PORT] [--partitions 4] [--stores 100]
      [--skus 10] [--rules PATH ...] [--source TREE] [--csv PATH] [--keep-topics]
Broker defaults to KPIWATCH_KAFKA_BOOTSTRAP; start one with deploy/services.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka_throughput import (
    PROGRESS_EVERY_S,
    SAMPLE_EVERY_S,
    _cpu_seconds,
    _delete_topics,
    _free_port,
    _rss_mib,
    _stop,
    _worker_counts,
    add_run_options,
    add_worker_options,
    exit_on_sigterm,
)
from pydantic import ValidationError

from connectors.kafka import ensure_topics
from connectors.simulator import simulate
from rules.alerts import Alert
from streams.events import EVENTS_TOPIC, Event, InventoryEvent, encode, encode_message, pack

REPO = Path(__file__).resolve().parent.parent
AIM_S: Final = 0.5  # the aim: p99 below this, in both situations
START: Final = datetime(2026, 1, 5, tzinfo=UTC)  # simulated event time starts here
PROBE_STORE: Final = "latency-probe"
PROBE_SKU: Final = "PROBE-"
# A probe's event time trails the traffic's newest by an hour: traffic of the probe's partition
# may still be in flight from the other producer, and a probe ahead of it would move the
# partition's event time past a whole hour before that traffic (judging silence too early).
PROBE_BEHIND: Final = timedelta(hours=1)
SLOWEST_SHOWN: Final = 5


@dataclass(frozen=True)
class Outgoing:
    """One message of traffic, encoded ahead of time so that sending it costs next to nothing."""

    key: bytes
    value: bytes
    events: int
    newest: datetime


class Traffic:
    """The simulated stores' events as messages, going on from phase to phase: event time only
    moves forward, as a worker expects of a store."""

    def __init__(self, args: argparse.Namespace) -> None:
        # Far more hours than any run uses: the simulator makes them lazily, hour by hour.
        self._events = simulate(START, hours=100_000, stores=args.stores, skus=args.skus, seed=7)

    def take(self, count: int) -> list[Outgoing]:
        messages = [_outgoing(group) for group in pack(itertools.islice(self._events, count))]
        if sum(message.events for message in messages) < count:
            sys.exit("the simulator ran out of events")
        return messages


def _outgoing(group: list[Event]) -> Outgoing:
    newest = max(event.occurred_at for event in group)
    return Outgoing(group[0].store_id.encode(), encode_message(group), len(group), newest)


@dataclass
class Phase:
    """One measured phase: when each probe was sent, acknowledged, alerted on."""

    name: str
    timeout: float
    sent: dict[str, float] = field(default_factory=dict)  # probe SKU -> wall clock at send
    offset: dict[str, float] = field(default_factory=dict)  # probe SKU -> seconds into phase
    acked: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)  # first firing alert
    stamped: dict[str, float] = field(default_factory=dict)  # that alert's record timestamp
    repeats: int = 0  # further alerts for a probe SKU (none expected)
    events: int = 0  # traffic events sent
    seconds: float = 0.0  # time spent sending
    lag: int = 0  # events sent but not yet counted by the worker when sending ended
    cpu: float = 0.0  # the worker's CPU, in cores, while sending
    hours: float = 0.0  # simulated hours the traffic's event time moved on while sending

    def note(self, value: bytes | None, stamped: float, now: float) -> None:
        if value is None or PROBE_SKU.encode() not in value:
            return  # an alert of the simulated stores: not ours, and not worth parsing
        try:
            alert = Alert.model_validate_json(value)
        except ValidationError:
            return
        sku = alert.labels.get("sku", "")
        if sku not in self.sent or alert.status != "firing":
            return
        if sku in self.received:
            self.repeats += 1
            return
        self.received[sku] = now
        self.stamped[sku] = stamped

    def latency(self, sku: str) -> float:
        """Seconds from send to alert; infinite when no alert came within the timeout."""
        found = self.received.get(sku)
        if found is None or found - self.sent[sku] > self.timeout:
            return math.inf
        return found - self.sent[sku]

    def latencies(self) -> list[float]:
        return sorted(self.latency(sku) for sku in self.sent)

    def missed(self) -> list[str]:
        return [sku for sku in self.sent if math.isinf(self.latency(sku))]

    def in_worker(self) -> list[float]:
        """Send to the worker's alert record timestamp (ms resolution): the part of the latency
        spent before the alert reached the broker."""
        return sorted(self.stamped[sku] - self.sent[sku] for sku in self.stamped)

    def acks(self) -> list[float]:
        return sorted(self.acked[sku] - self.sent[sku] for sku in self.acked)


class AlertWatch:
    """Reads `<prefix>alerts` from its end during a phase; notes each probe's alert."""

    def __init__(self, broker: str, topic: str, partitions: int) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=broker, group_id=None, enable_auto_commit=False
        )
        self.partitions = [TopicPartition(topic, number) for number in range(partitions)]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.partitions)

    async def follow(self, phase: Phase) -> None:
        """From the end of every partition (resolved now, before the phase sends anything)."""
        await self.consumer.seek_to_end(*self.partitions)
        for partition in self.partitions:
            await self.consumer.position(partition)
        self._task = asyncio.create_task(self._read(phase))

    async def _read(self, phase: Phase) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    phase.note(message.value, message.timestamp / 1000, now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.stop()
        await self.consumer.stop()


@dataclass
class Run:
    """What the phases share: the worker, the producers, what was sent so far."""

    args: argparse.Namespace
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    client: httpx.AsyncClient
    loader: AIOKafkaProducer  # traffic
    prober: AIOKafkaProducer  # probes: one event a message, sent at once
    watch: AlertWatch
    sent: int = 0  # events produced (traffic and probes): what the worker must count
    clock: datetime = START  # newest event time of the traffic sent
    probes: int = 0  # probe SKUs made so far: PROBE-1, PROBE-2, ...
    pending: list[asyncio.Future[object]] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return f"{self.args.prefix}{EVENTS_TOPIC}"

    async def counted(self) -> int | None:
        """Events the worker has counted, or None when it does not answer (busy, starting)."""
        found = await self.progress()
        return None if found is None else found[0]

    async def progress(self) -> tuple[int, bool] | None:
        """(events counted, every rollup message it sent applied) from the worker's /stats."""
        if self.process.poll() is not None:
            sys.exit(f"the worker exited with {self.process.returncode}; see {self.log_path}")
        found = await _worker_counts(self.client, self.port)
        return None if found is None else found[:2]


@dataclass
class Drain:
    events: int
    seconds: float  # from the first event counted (or from `began`) to the last
    startup: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Report:
    calibration: Drain
    rate: float
    warm_up: float
    phases: list[Phase]
    backlog: Drain
    notes: list[str] = field(default_factory=list)


def main() -> None:
    exit_on_sigterm()
    parser = _parser()
    args = parser.parse_args()
    if not args.broker:
        sys.exit("no broker: pass --broker or set KPIWATCH_KAFKA_BOOTSTRAP")
    if args.share <= 0 or args.probe_rate <= 0 or args.seconds <= 0:
        parser.error("--share, --probe-rate and --seconds must be above 0")
    print(f"broker {args.broker}, prefix {args.prefix!r}, {args.partitions} partitions per topic")
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"(other processes add latency), python {sys.version.split()[0]}"
    )
    try:
        report = asyncio.run(_measure(args))
    finally:
        if not args.keep_topics:
            asyncio.run(_delete_topics(args.broker, args.prefix))
    _report(args, report)
    if args.csv:
        _write_csv(args.csv, report.phases)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a steady phase")
    parser.add_argument("--backlog", type=int, default=100_000, help="events, second situation")
    parser.add_argument(
        "--calibration", type=int, default=50_000, help="events drained to measure the maximum"
    )
    parser.add_argument("--share", type=float, default=0.5, help="steady load / the maximum")
    parser.add_argument("--probe-rate", type=float, default=5.0, help="probes per second")
    parser.add_argument("--alert-timeout", type=float, default=10.0, help="a probe is missed after")
    add_run_options(parser)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--skus", type=int, default=10, help="SKUs per store")
    parser.add_argument(
        "--rules",
        type=Path,
        action="append",
        help="rule file or folder for the worker (repeatable; default: rules/library, which "
        "holds default.yaml's `stockout`, the rule the probes need), of --source",
    )
    parser.add_argument(
        "--stall", type=float, default=300.0, help="give up when a count stays still this long (s)"
    )
    add_worker_options(parser)
    parser.add_argument("--csv", type=Path, help="write one row per probe here (to plot spikes)")
    return parser


# ---------------------------------------------------------------- the run


async def _measure(args: argparse.Namespace) -> Report:
    topic = f"{args.prefix}{EVENTS_TOPIC}"
    # Made before loading: a topic the broker auto-creates would get its default partitions.
    await ensure_topics(args.broker, [topic], args.partitions)
    traffic = Traffic(args)
    loader = AIOKafkaProducer(
        bootstrap_servers=args.broker, acks=1, linger_ms=5, max_batch_size=1024 * 1024
    )
    prober = AIOKafkaProducer(bootstrap_servers=args.broker, acks=1, linger_ms=0)
    watch = AlertWatch(args.broker, f"{args.prefix}alerts", args.partitions)
    await loader.start()
    await prober.start()
    data_dir = Path(tempfile.mkdtemp(prefix="kpiwatch-latency-"))
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kpiwatch-latency-log-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        began = time.perf_counter()
        calibration = traffic.take(args.calibration)
        events, newest = await _load(loader, topic, calibration)
        print(f"calibration: {events:,} events loaded in {time.perf_counter() - began:.0f} s")
        port = _free_port()
        log_path = log_dir / "worker.log"
        process = _start_worker(args, port, data_dir, log_path)
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                run = Run(args, process, port, log_path, client, loader, prober, watch)
                run.sent, run.clock = events, newest
                return await _phases(run, traffic)
        finally:
            _stop("worker", process)
    finally:
        await watch.close()
        await prober.stop()
        await loader.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _start_worker(
    args: argparse.Namespace, port: int, data_dir: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    rules = args.rules or [args.source / "rules" / "library"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KPIWATCH_")},
        "KPIWATCH_KAFKA_BOOTSTRAP": args.broker,
        "KPIWATCH_TOPIC_PREFIX": args.prefix,
        # A fresh app id: a fresh consumer group (reads from the earliest offset) and fresh
        # changelogs, so the worker starts with empty tables over the calibration backlog.
        "KPIWATCH_APP_ID": f"worker-{uuid.uuid4().hex[:8]}",
        "KPIWATCH_PARTITIONS": str(args.partitions),
        "KPIWATCH_WEB_PORT": str(port),
        "KPIWATCH_DATA_DIR": str(data_dir),
        "KPIWATCH_RULES": json.dumps([str(path.resolve()) for path in rules]),
        "PYTHONPATH": str(args.source.resolve()),
    }
    command = [sys.executable, "-m", "streams.cli", "worker", "--no-console"]
    print(f"worker: starting (port {port}, rules {', '.join(map(str, rules))}, log {log_path})")
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            command, cwd=args.source, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


async def _phases(run: Run, traffic: Traffic) -> Report:
    args = run.args
    calibration = await _drain(run, "calibration", run.sent, rollups=True)
    if calibration.rate <= 0:
        sys.exit("calibration: the backlog was counted in one sample; raise --calibration")
    rate = calibration.rate * args.share
    print(
        f"calibration: worker maximum {calibration.rate:,.0f} events/s "
        f"(start-up {calibration.startup:.1f} s); steady load {rate:,.0f} events/s"
    )
    await run.watch.start()
    warm_up = await _warm_up(run)
    began = time.perf_counter()
    planned = int(rate * args.seconds)
    first, backlog, second = (traffic.take(n) for n in (planned, args.backlog, planned))
    print(f"traffic for the phases made in {time.perf_counter() - began:.0f} s (worker idle)")
    steady = await _steady(run, "steady", rate, first)
    drained = await _backlog(run, backlog)
    after = await _steady(run, f"after {args.backlog:,} backlog", rate, second)
    report = Report(calibration, rate, warm_up, [steady, after], drained)
    report.notes.append(f"worker RSS at the end {_rss_mib(run.process.pid):.0f} MiB")
    return report


async def _load(
    producer: AIOKafkaProducer, topic: str, messages: list[Outgoing]
) -> tuple[int, datetime]:
    """Send all at once, as fast as the broker takes them; (events, newest event time)."""
    pending: list[asyncio.Future[object]] = []
    events, newest = 0, START
    for message in messages:
        pending.append(await producer.send(topic, message.value, key=message.key))
        events += message.events
        newest = max(newest, message.newest)
        if len(pending) >= 20_000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return events, newest


async def _drain(run: Run, name: str, target: int, *, rollups: bool = False) -> Drain:
    """Wait until the worker has counted `target` events (and, with `rollups`, applied every
    rollup message it sent: caught up). Its rate runs from the first sample with events
    counted to the one with all of them (as kafka_throughput.py, start-up left out)."""
    started = time.perf_counter()
    first: tuple[float, int] | None = None
    done_at, last_print, moved, last = 0.0, started, started, -1
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        found = await run.progress()
        now = time.perf_counter()
        if found is None:
            continue
        count, caught_up = found
        if count != last:
            moved, last = now, count
        if now - moved > run.args.stall:
            sys.exit(f"{name}: stuck at {count:,} events for {run.args.stall:.0f} s")
        if first is None and count:
            first = (now, count)
        if count >= target and not done_at:
            done_at = now
        if now - last_print >= PROGRESS_EVERY_S:
            last_print = now
            print(f"{name}: {count:>10,} / {target:,} events counted  {now - started:5.0f} s")
        if done_at and (caught_up or not rollups):
            break
    if first is None:
        return Drain(0, 0.0)
    return Drain(target - first[1], done_at - first[0], first[0] - started)


async def _warm_up(run: Run) -> float:
    """One probe, waited for: the worker is reading and the rules fire on a probe."""
    phase = Phase("warm-up", run.args.alert_timeout)
    await run.watch.follow(phase)
    try:
        await _send_probe(run, phase, time.perf_counter())
        await _await_alerts(run, phase)
    finally:
        await run.watch.stop()
    latency = phase.latency(next(iter(phase.sent)))
    if math.isinf(latency):
        sys.exit(
            f"warm-up: the probe had no alert within {run.args.alert_timeout:.0f} s; the rules "
            f"need `stockout` (available < 1 by [store, sku]); see {run.log_path}"
        )
    print(f"warm-up probe: alert after {latency * 1000:.0f} ms")
    return latency


async def _backlog(run: Run, messages: list[Outgoing]) -> Drain:
    """Produce the backlog at once and wait until the worker counted all of it."""
    began = time.perf_counter()
    events, newest = await _load(run.loader, run.topic, messages)
    run.sent += events
    run.clock = max(run.clock, newest)
    print(f"backlog: {events:,} events produced in {time.perf_counter() - began:.1f} s")
    await _drain(run, "backlog", run.sent)
    drained = Drain(events, time.perf_counter() - began)
    print(f"backlog: counted by the worker {drained.seconds:.1f} s after the first was produced")
    return drained


# ---------------------------------------------------------------- a steady phase


async def _steady(run: Run, name: str, rate: float, messages: list[Outgoing]) -> Phase:
    phase = Phase(name, run.args.alert_timeout)
    await run.watch.follow(phase)
    cpu, clock = _cpu_seconds(run.process.pid), run.clock
    began = time.perf_counter()
    progress = asyncio.create_task(_progress(run, phase, began))
    try:
        await asyncio.gather(_pace(run, phase, messages, rate, began), _probe(run, phase, began))
        phase.seconds = time.perf_counter() - began
        phase.cpu = (_cpu_seconds(run.process.pid) - cpu) / phase.seconds
        phase.hours = (run.clock - clock).total_seconds() / 3600
        counted = await run.counted()
        phase.lag = run.sent - counted if counted is not None else -1
        await _await_alerts(run, phase)
    finally:
        progress.cancel()
        await run.watch.stop()
    await asyncio.gather(*run.pending)
    run.pending.clear()
    return phase


async def _pace(
    run: Run, phase: Phase, messages: list[Outgoing], rate: float, began: float
) -> None:
    """Each message when the events before it, at `rate`, are due."""
    pending: list[asyncio.Future[object]] = []
    for message in messages:
        delay = began + phase.events / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(await run.loader.send(run.topic, message.value, key=message.key))
        phase.events += message.events
        run.sent += message.events
        run.clock = max(run.clock, message.newest)
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def _probe(run: Run, phase: Phase, began: float) -> None:
    for number in range(int(run.args.seconds * run.args.probe_rate)):
        delay = began + number / run.args.probe_rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await _send_probe(run, phase, began)


async def _send_probe(run: Run, phase: Phase, began: float) -> None:
    run.probes += 1
    sku = f"{PROBE_SKU}{run.probes}"
    value = encode(_probe_event(sku, run.clock - PROBE_BEHIND))
    phase.offset[sku] = time.perf_counter() - began
    phase.sent[sku] = time.time()
    future = await run.prober.send(run.topic, value, key=PROBE_STORE.encode())
    run.sent += 1
    future.add_done_callback(functools.partial(_acked, phase.acked, sku))
    run.pending.append(future)


def _probe_event(sku: str, at: datetime) -> InventoryEvent:
    return InventoryEvent(
        event_id=f"{PROBE_STORE}:{sku}",
        occurred_at=at,
        platform="amazon",
        marketplace="US",
        store_id=PROBE_STORE,
        sku=sku,
        warehouse="fba",
        available=0,
        as_of=at,
    )


def _acked(acked: dict[str, float], sku: str, future: asyncio.Future[object]) -> None:
    if not future.cancelled() and future.exception() is None:
        acked[sku] = time.time()


async def _await_alerts(run: Run, phase: Phase) -> None:
    """Until every probe has its alert, or the last one sent had its full timeout."""
    deadline = max(phase.sent.values(), default=time.time()) + phase.timeout
    while time.time() < deadline and len(phase.received) < len(phase.sent):
        await asyncio.sleep(0.05)


async def _progress(run: Run, phase: Phase, began: float) -> None:
    base = run.sent
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        seconds = time.perf_counter() - began
        counted = await run.counted()
        behind = f"{run.sent - counted:,}" if counted is not None else "?"
        received = [phase.latency(sku) for sku in phase.received]
        print(
            f"{phase.name}: {seconds:4.0f} s  {phase.events:>9,} events sent "
            f"({phase.events / seconds:,.0f}/s), worker behind by {behind} "
            f"(of {run.sent - base:,} this phase)  probes {len(phase.sent)}, alerts "
            f"{len(phase.received)}, p99 so far {_ms(_quantile(sorted(received), 0.99))}"
        )


# ---------------------------------------------------------------- report


def _quantile(values: list[float], q: float) -> float:
    """Nearest rank of sorted `values` (nan when there are none)."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "missed"
    return f"{seconds * 1000:,.0f} ms"


def _report(args: argparse.Namespace, report: Report) -> None:
    print()
    rules = ", ".join(str(path) for path in args.rules or [Path("rules/library")])
    print(
        f"event produced -> alert received on {args.prefix}alerts; {args.stores} stores x "
        f"{args.skus} SKUs, {args.partitions} partitions, rules {rules}, {os.cpu_count()} cores"
    )
    drain = report.calibration
    print(
        f"worker maximum {drain.rate:,.0f} events/s ({drain.events:,} of a {args.calibration:,}"
        f"-event backlog in {drain.seconds:.1f} s); steady load {args.share:.0%} of it: "
        f"{report.rate:,.0f} events/s for {args.seconds:.0f} s; {args.probe_rate:g} probes/s; "
        f"missed = no alert within {args.alert_timeout:.0f} s"
    )
    print(
        f"backlog {report.backlog.events:,} events: all counted {report.backlog.seconds:.1f} s "
        f"after the first was produced ({report.backlog.rate:,.0f} events/s)"
    )
    print(f"warm-up probe: {_ms(report.warm_up)}")
    _table(report.phases)
    print()
    for phase in report.phases:
        _detail(phase)
    for phase in report.phases:
        p99 = _quantile(phase.latencies(), 0.99)
        met = "met" if p99 < AIM_S else "NOT met"
        missed = len(phase.missed())
        tail = f"; but {missed} probe(s) had no alert" if missed and p99 < AIM_S else ""
        print(f"aim p99 < {AIM_S * 1000:.0f} ms, {phase.name}: {met} (p99 {_ms(p99)}){tail}")
    for note in report.notes:
        print(note)
    load1, load5, _ = os.getloadavg()
    print(f"machine load average at the end: {load1:.1f} (1 min), {load5:.1f} (5 min)")


def _table(phases: list[Phase]) -> None:
    print(
        f"{'':<24}{'probes':>7}{'alerts':>7}{'missed':>7}{'p50':>9}{'p95':>9}{'p99':>9}"
        f"{'max':>9}  {'events/s':>9}{'worker CPU':>11}"
    )
    for phase in phases:
        found = phase.latencies()
        quantiles = "".join(f"{_ms(_quantile(found, q)):>9}" for q in (0.5, 0.95, 0.99, 1.0))
        alerts = len(phase.sent) - len(phase.missed())
        rate = phase.events / phase.seconds if phase.seconds else 0.0
        print(
            f"{phase.name:<24}{len(phase.sent):>7}{alerts:>7}{len(phase.missed()):>7}"
            f"{quantiles}  {rate:>9,.0f}{phase.cpu:>10.0%} "
        )


def _write_csv(path: Path, phases: list[Phase]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["phase", "sku", "sent_unix", "sent_offset_s", "latency_ms", "in_worker_ms", "ack_ms"]
        )
        for phase in phases:
            for sku, sent in phase.sent.items():
                latency = phase.latency(sku)
                row = [phase.name, sku, f"{sent:.6f}", f"{phase.offset[sku]:.3f}"]
                row.append("" if math.isinf(latency) else f"{latency * 1000:.1f}")
                for found in (phase.stamped.get(sku), phase.acked.get(sku)):
                    row.append("" if found is None else f"{(found - sent) * 1000:.1f}")
                writer.writerow(row)
    print(f"per-probe rows: {path}")


def _detail(phase: Phase) -> None:
    worker, acks = phase.in_worker(), phase.acks()
    print(
        f"{phase.name}: up to the worker's alert record (its producer's timestamp) p50 "
        f"{_ms(_quantile(worker, 0.5))}, p99 {_ms(_quantile(worker, 0.99))}; probe acknowledged "
        f"p50 {_ms(_quantile(acks, 0.5))}, p99 {_ms(_quantile(acks, 0.99))}; worker behind by "
        f"{phase.lag:,} events when sending ended; {phase.repeats} repeated alerts"
    )
    print(
        f"  event time ran {phase.hours:.0f} simulated hours in {phase.seconds:.0f} s: the "
        "worker's hourly and daily work (silence ticks, rollups, expiry) comes that much more "
        "often than in production"
    )
    slowest = sorted(phase.sent, key=phase.latency, reverse=True)[:SLOWEST_SHOWN]
    shown = ", ".join(f"+{phase.offset[sku]:.1f} s {_ms(phase.latency(sku))}" for sku in slowest)
    print(f"  slowest (sent at, latency): {shown}")
    for sku in phase.missed():
        late = phase.received.get(sku)
        when = f"came after {late - phase.sent[sku]:.1f} s" if late else "never came"
        print(f"  missed {sku}, sent at +{phase.offset[sku]:.1f} s: alert {when}")


if __name__ == "__main__":
    main()
