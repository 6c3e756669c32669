"""Kafka runtime throughput: the kpiwatch worker against the simplest programs doing its I/O.

One run, one broker, two backlogs of the same simulated events (orders, ad reports, stock
snapshots of `--stores` stores), on fresh topics `<prefix>single.events` (one event per
message, as a hand-written producer sends) and `<prefix>packed.events` (several events of a
store per message, as `kpiwatch produce` and the connectors send). On each backlog:
  ceiling  - a plain aiokafka consumer reads every message and decodes it
             (streams.events.decode_message): what any Python consumer of the topic pays;
  minimal  - bench/minimal_faust.py: a Faust app that decodes and writes one table key per
             store per batch of take_events(1000, 0.1): what Faust itself pays;
  worker   - `kpiwatch worker` with the rule library, fresh app id (fresh group, changelogs),
             timed from its first event until every event is counted AND every rollup message
             it sent is applied (kpiwatch_rollup_messages_total): the work is done, not only
             the reading. Its rate over the first and the last tenth of the events says whether
             growing state slows it down; Kafka messages it wrote per event are counted
             (kpiwatch_kafka_messages_written_total).
All rates start at the first event read, so group join and start-up are reported, not mixed in.
Compare the ratios: the machine is shared and absolute figures move from run to run.

Usage:
  .venv/bin/python bench/kafka_throughput.py [--events 1000000] [--broker HOST:PORT]
      [--partitions 4] [--stores 100] [--skus 10] [--modes single,packed] [--keep-topics]
Broker defaults to KPIWATCH_KAFKA_BOOTSTRAP; start one with deploy/services.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from connectors.kafka import ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, Event, decode_message, encode, encode_message, pack

REPO = Path(__file__).resolve().parent.parent
PROGRESS_EVERY_S = 10.0
SAMPLE_EVERY_S = 0.5
MODES = ("single", "packed")


@dataclass
class Measured:
    events: int
    seconds: float
    note: str = ""
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, events)
    written: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def tenth(self, which: str) -> float:
        """events/s over the first or the last tenth of the events."""
        if len(self.samples) < 2 or not self.events:
            return 0.0
        low, high = (
            (0, self.events // 10) if which == "first" else (self.events * 9 // 10, self.events)
        )
        start = _when(self.samples, low)
        end = _when(self.samples, high)
        return (high - low) / (end - start) if end > start else 0.0


def _when(samples: list[tuple[float, int]], count: int) -> float:
    """When the count passed `count`, interpolated between samples."""
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if c1 >= count:
            return t0 + (t1 - t0) * ((count - c0) / (c1 - c0) if c1 > c0 else 0)
    return samples[-1][0]


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so the `finally` blocks that stop the workers a benchmark
    started still run when the benchmark itself is stopped (by default they would not, and
    the workers would go on loading the machine)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    exit_on_sigterm()
    args = _parser().parse_args()
    if not args.broker:
        sys.exit("no broker: pass --broker or set KPIWATCH_KAFKA_BOOTSTRAP")
    print(f"broker {args.broker}, prefix {args.prefix!r}, {args.partitions} partitions per topic")
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"(other processes skew the figures; the ratios less), python {sys.version.split()[0]}"
    )
    results: dict[str, dict[str, Measured]] = {}
    try:
        asyncio.run(_load(args))
        for mode in args.modes:
            topic = f"{args.prefix}{mode}.{EVENTS_TOPIC}"
            found = results[mode] = {}
            found["ceiling"] = asyncio.run(_ceiling(args, topic))
            if not args.skip_minimal:
                found["minimal"] = _run_minimal(args, topic)
            found["worker"] = _run_worker(args, mode)
    finally:
        if not args.keep_topics:
            asyncio.run(_delete_topics(args.broker, args.prefix))
    _report(args, results)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    add_run_options(parser)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--skus", type=int, default=10, help="SKUs per store")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rules", type=Path, default=REPO / "rules" / "library")
    parser.add_argument(
        "--modes", type=lambda text: text.split(","), default=list(MODES), help="single,packed"
    )
    parser.add_argument("--skip-minimal", action="store_true", help="no minimal Faust app run")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on a run after (s)")
    parser.add_argument(
        "--stall", type=float, default=300.0, help="give up when a count stays still this long (s)"
    )
    add_worker_options(parser)
    return parser


def add_run_options(parser: argparse.ArgumentParser, run: str | None = None) -> None:
    """The broker and fresh topics of a run: options every Kafka benchmark here shares."""
    run = run or uuid.uuid4().hex[:8]
    parser.add_argument("--broker", default=os.environ.get("KPIWATCH_KAFKA_BOOTSTRAP"))
    parser.add_argument(
        "--prefix",
        default=f"bench-{run}-",
        help="topic prefix of this run (default: bench-<random>-, fresh topics every run)",
    )
    parser.add_argument("--partitions", type=int, default=4)


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """Which tree a benchmark's worker runs from, and what is kept after the run."""
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO,
        help="kpiwatch tree the worker runs from (e.g. a `git archive` snapshot; default: ours)",
    )
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    parser.add_argument("--log-dir", type=Path, help="where process logs go (default: temp)")


# ---------------------------------------------------------------- load


def _events(args: argparse.Namespace) -> Iterator[Event]:
    """Exactly `args.events` simulated events, in time order."""
    # Per store-hour the simulator makes ~3.5 orders, one ad report per SKU and a stock snapshot
    # per SKU every 2 h; 20 % spare hours so the stream never runs short.
    per_hour = args.stores * (3.5 + 1.5 * args.skus)
    hours = int(args.events / per_hour * 1.2) + 4
    start = datetime(2026, 1, 5, tzinfo=UTC)
    simulated = simulate(start, hours=hours, stores=args.stores, skus=args.skus, seed=args.seed)
    return itertools.islice(simulated, args.events)


async def _load(args: argparse.Namespace) -> None:
    names = [f"{args.prefix}{mode}.{EVENTS_TOPIC}" for mode in args.modes]
    await ensure_topics(args.broker, names, args.partitions)
    # Loading only: acks=1 and big lingering batches; the figures are about the consumers.
    producer = AIOKafkaProducer(
        bootstrap_servers=args.broker, acks=1, linger_ms=50, max_batch_size=1024 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    counts = dict.fromkeys(args.modes, 0)
    pending: list[asyncio.Future[object]] = []
    try:
        events = list(_events(args))
        if len(events) < args.events:
            sys.exit(f"the simulator made only {len(events)} events; raise --stores or --skus")
        for mode in args.modes:
            topic = f"{args.prefix}{mode}.{EVENTS_TOPIC}"
            groups = ([e] for e in events) if mode == "single" else pack(events)
            for group in groups:
                value = encode(group[0]) if len(group) == 1 else encode_message(group)
                pending.append(await producer.send(topic, value, key=group[0].store_id.encode()))
                counts[mode] += 1
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    messages = ", ".join(f"{mode}: {n:,} messages" for mode, n in counts.items())
    print(
        f"load: {args.events:,} events ({messages}) in {time.perf_counter() - began:.0f} s "
        "(not measured)"
    )


# ---------------------------------------------------------------- ceiling


async def _ceiling(args: argparse.Namespace, topic: str) -> Measured:
    partitions = [TopicPartition(topic, number) for number in range(args.partitions)]
    consumer = await reader(args.broker, partitions)
    try:
        count, began, last = 0, 0.0, 0.0
        samples: list[tuple[float, int]] = []
        while count < args.events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                continue
            if not began:
                began = last = time.perf_counter()
            for tp, messages in batches.items():
                for message in messages:
                    count += len(decode_message(message.value, f"{tp.partition}/{message.offset}"))
            samples.append((time.perf_counter() - began, count))
            if time.perf_counter() - last >= PROGRESS_EVERY_S:
                last = time.perf_counter()
                _progress(f"ceiling {topic}", count, args.events, last - began)
        return Measured(count, time.perf_counter() - began, samples=samples)
    finally:
        await consumer.stop()


async def reader(broker: str, partitions: list[TopicPartition]) -> AIOKafkaConsumer:
    """A started plain aiokafka consumer (no group, large fetches) assigned `partitions` from
    their beginning: the simplest program that reads them, the reference a ratio is taken to."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer


# ---------------------------------------------------------------- minimal faust, worker


def _run_minimal(args: argparse.Namespace, topic: str) -> Measured:
    port = _free_port()
    command = [
        sys.executable,
        str(REPO / "bench" / "minimal_faust.py"),
        args.broker,
        topic,
        str(args.partitions),
        str(port),
    ]
    env = {**os.environ, "PYTHONPATH": str(args.source.resolve())}
    return _watch(args, "minimal", command, env, port, _minimal_counts)


def _run_worker(args: argparse.Namespace, mode: str) -> Measured:
    port = _free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="kpiwatch-bench-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KPIWATCH_")},
        "KPIWATCH_KAFKA_BOOTSTRAP": args.broker,
        "KPIWATCH_TOPIC_PREFIX": f"{args.prefix}{mode}.",
        # A fresh app id: a fresh consumer group (reads from the earliest offset) and fresh
        # changelog topics, so the worker starts with empty tables over the whole backlog.
        "KPIWATCH_APP_ID": f"worker-{uuid.uuid4().hex[:8]}",
        "KPIWATCH_PARTITIONS": str(args.partitions),
        "KPIWATCH_WEB_PORT": str(port),
        "KPIWATCH_DATA_DIR": str(data_dir),
        "KPIWATCH_RULES": f'["{args.rules.resolve()}"]',
        "PYTHONPATH": str(args.source.resolve()),
    }
    command = [sys.executable, "-m", "streams.cli", "worker", "--no-console"]
    return _watch(args, f"worker {mode}", command, env, port, _worker_counts)


def _watch(args, name, command, env, port, counts) -> Measured:  # type: ignore[no-untyped-def]
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="kpiwatch-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name.replace(' ', '-')}.log"
    print(f"{name}: starting (port {port}, log {log_path})")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=args.source, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            return asyncio.run(_follow(args, name, process, log_path, port, counts))
        finally:
            _stop(name, process)


async def _follow(args, name, process, log_path, port, counts) -> Measured:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    first: tuple[float, float] | None = None  # (time, cpu seconds) at the first event counted
    samples: list[tuple[float, int]] = []
    last_print, done, extra = 0.0, 0, ""
    moved = started
    deadline = started + args.timeout
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            if process.poll() is not None:
                sys.exit(f"{name} exited with {process.returncode}; see {log_path}")
            if time.perf_counter() > deadline:
                print(f"{name}: timed out after {args.timeout:.0f} s at {done:,} events")
                break
            await asyncio.sleep(SAMPLE_EVERY_S)
            found = await counts(client, port)
            if found is None:
                continue
            if found[0] != done:
                moved = time.perf_counter()
            done, finished, extra = found
            now = time.perf_counter()
            if now - moved > args.stall:
                sys.exit(f"{name}: stuck at {done:,} events for {args.stall:.0f} s; see {log_path}")
            if done and first is None:
                first = (now, _cpu_seconds(process.pid))
            if first is not None:
                samples.append((now - first[0], done))
                if now - last_print >= PROGRESS_EVERY_S:
                    last_print = now
                    _progress(name, done, args.events, now - first[0])
            if done >= args.events and finished:
                break
    if first is None:
        sys.exit(f"{name} read no events; see {log_path}")
    elapsed = time.perf_counter() - first[0]
    cpu = (_cpu_seconds(process.pid) - first[1]) / elapsed
    note = (
        f"start-up {first[0] - started:.1f} s, CPU {cpu:.0%} of one core, "
        f"RSS {_rss_mib(process.pid):.0f} MiB{extra}"
    )
    measured = Measured(done, elapsed, note, samples)
    if counts is _worker_counts:
        measured.written = await _written(port)
    return measured


async def _stats(client: httpx.AsyncClient, port: int) -> dict[str, float] | None:
    """The worker's /stats page (cheap: /metrics would render every KPI gauge each time)."""
    try:
        found: dict[str, float] = (await client.get(f"http://127.0.0.1:{port}/stats")).json()
    except (httpx.HTTPError, ValueError):
        return None  # web server not up yet, or too busy to answer this time
    return found


async def _worker_counts(client: httpx.AsyncClient, port: int) -> tuple[int, bool, str] | None:
    found = await _stats(client, port)
    if found is None:
        return None
    events = int(found.get("kpiwatch_events_in_total", 0))
    sent = found.get("kpiwatch_kafka_messages_written_total:rollups", 0.0)
    applied = sum(v for k, v in found.items() if k.startswith("kpiwatch_rollup_messages_total"))
    dead = int(found.get("kpiwatch_events_dead_lettered_total", 0))
    return events, sent > 0 and applied >= sent, f", dead-lettered {dead}"


async def _written(port: int) -> float:
    async with httpx.AsyncClient(timeout=5.0) as client:
        found = await _stats(client, port) or {}
    return sum(v for k, v in found.items() if k.startswith("kpiwatch_kafka_messages_written"))


async def _minimal_counts(client: httpx.AsyncClient, port: int) -> tuple[int, bool, str] | None:
    try:
        text = (await client.get(f"http://127.0.0.1:{port}/count")).text
    except httpx.HTTPError:
        return None
    return int(text), True, ""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stop(name: str, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM what we started (by its PID) and wait; SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(f"{name}: stopped (pid {process.pid}, exit {process.returncode})")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---------------------------------------------------------------- common


async def _delete_topics(broker: str, prefix: str) -> None:
    """Every topic of this run: inputs, outputs, and the workers' changelogs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        names += [n for n in await admin.list_topics() if n.startswith("minimal-")]
        if names:
            await admin.delete_topics(names)
        print(f"deleted {len(names)} topics with prefix {prefix!r}")
    finally:
        await admin.close()


def _progress(stage: str, done: int, total: int, seconds: float) -> None:
    rate = done / seconds if seconds > 0 else 0.0
    print(f"{stage}: {done:>10,} / {total:,} events  {seconds:6.0f} s  {rate:>9,.0f} events/s")


def _report(args: argparse.Namespace, results: dict[str, dict[str, Measured]]) -> None:
    print()
    print(
        f"{args.events:,} mixed events, {args.stores} stores x {args.skus} SKUs, "
        f"{args.partitions} partitions, rules {args.rules.name}, {os.cpu_count()} cores"
    )
    print(f"{'':<26}{'events':>12}{'seconds':>10}{'events/s':>12}")
    for mode, found in results.items():
        for name, measured in found.items():
            label = f"{mode} {name}"
            print(
                f"{label:<26}{measured.events:>12,}{measured.seconds:>10.1f}{measured.rate:>12,.0f}"
            )
    print()
    for mode, found in results.items():
        worker = found["worker"]
        ceiling = found["ceiling"]
        line = f"{mode}: worker / ceiling {worker.rate / ceiling.rate:.2f}"
        if "minimal" in found:
            line += f", worker / minimal Faust {worker.rate / found['minimal'].rate:.2f}"
        first, last = worker.tenth("first"), worker.tenth("last")
        line += f", last tenth / first tenth {last / first if first else 0:.2f}"
        line += f" ({first:,.0f} -> {last:,.0f} events/s)"
        line += f", Kafka messages written per event {worker.written / worker.events:.2f}"
        print(line)
        print(f"  worker: {worker.note}")
    load1, load5, _ = os.getloadavg()
    print(f"machine load average at the end: {load1:.1f} (1 min), {load5:.1f} (5 min)")


if __name__ == "__main__":
    main()
