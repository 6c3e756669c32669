"""Kafka runtime throughput: the kpiwatch worker against a plain consume-and-decode ceiling.

One run, one broker, the same backlog for both measurements:
  load     - simulated mixed events (orders, ad-spend, inventory) produced onto fresh topics
             `<prefix>orders|ad-spend|inventory` (generation is not part of any figure);
  ceiling  - a plain aiokafka consumer reads every message and decodes it (json + pydantic
             validation, streams.events.decode): what any Python consumer of these topics pays;
  worker   - `python -m streams.cli worker --no-console` as a subprocess with a fresh app id (so a
             fresh consumer group and fresh changelog topics) reads the same backlog; its rate is
             taken from the first event counted in kpiwatch_events_in_total (polled on /metrics)
             until the counter reaches the number of events loaded.
Both rates start at the first event read, so group join and start-up are reported, not mixed in.

Usage:
  .venv/bin/python bench/kafka_throughput.py [--events 1000000] [--broker HOST:PORT]
      [--prefix PREFIX] [--partitions 4] [--stores 100] [--skus 10] [--keep-topics]
Broker defaults to KPIWATCH_KAFKA_BOOTSTRAP; start one with deploy/services.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from worker_variant import VARIANTS

from connectors.kafka import ensure_topics
from connectors.simulator import simulate
from streams.events import TOPICS, EventKind, decode, encode

REPO = Path(__file__).resolve().parent.parent
PROGRESS_EVERY_S = 5.0
READY_LINE = re.compile(r"\[\^Worker\]: Ready")
COUNTER_LINE = re.compile(r"^kpiwatch_events_in_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)
DEAD_LINE = re.compile(r"^kpiwatch_events_dead_lettered_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class Measured:
    events: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def main() -> None:
    args = _parser().parse_args()
    if not args.broker:
        sys.exit("no broker: pass --broker or set KPIWATCH_KAFKA_BOOTSTRAP")
    print(f"broker {args.broker}, prefix {args.prefix!r}, {args.partitions} partitions per topic")
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"(other processes skew the figures; the ratio less), python {sys.version.split()[0]}"
    )
    try:
        asyncio.run(_load(args))
        ceiling = asyncio.run(_ceiling(args))
        worker = _run_worker(args)
    finally:
        if not args.keep_topics:
            asyncio.run(_delete_topics(args.broker, args.prefix))
    _report(args, ceiling, worker)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--broker", default=os.environ.get("KPIWATCH_KAFKA_BOOTSTRAP"))
    parser.add_argument(
        "--prefix",
        default=f"bench-{uuid.uuid4().hex[:8]}-",
        help="topic prefix of this run (default: bench-<random>-, fresh topics every run)",
    )
    parser.add_argument(
        "--partitions", type=int, default=int(os.environ.get("KPIWATCH_PARTITIONS", "4"))
    )
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--skus", type=int, default=10, help="SKUs per store")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--worker-timeout", type=float, default=3600.0, help="give up on the worker after (s)"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO,
        help="kpiwatch tree the worker runs from (e.g. a `git archive` snapshot; default: ours)",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        help="diagnostic: run the worker through bench/worker_variant.py with this patch",
    )
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    parser.add_argument(
        "--worker-log", type=Path, help="where the worker's output goes (default: a temp file)"
    )
    return parser


# ---------------------------------------------------------------- load


def _events(args: argparse.Namespace) -> Iterator[tuple[str, bytes, bytes]]:
    """(topic, key, value) for exactly `args.events` simulated events."""
    # Per store-hour the simulator makes ~3.5 orders, one ad report per SKU and an inventory
    # snapshot per SKU every 4 h; 20 % spare hours so the stream never runs short.
    per_hour = args.stores * (3.5 + 1.25 * args.skus)
    hours = int(args.events / per_hour * 1.2) + 4
    start = datetime(2026, 1, 5, tzinfo=UTC)
    simulated = simulate(start, hours=hours, stores=args.stores, skus=args.skus, seed=args.seed)
    for event in itertools.islice(simulated, args.events):
        yield args.prefix + TOPICS[event.type], event.store_id.encode(), encode(event)


async def _load(args: argparse.Namespace) -> None:
    names = [args.prefix + name for name in TOPICS.values()]
    await ensure_topics(args.broker, names, args.partitions)
    # Loading only: acks=1 and big lingering batches; the figures are about the consumers.
    producer = AIOKafkaProducer(
        bootstrap_servers=args.broker, acks=1, linger_ms=50, max_batch_size=512 * 1024
    )
    await producer.start()
    began = last = time.perf_counter()
    sent = 0
    pending: list[asyncio.Future[object]] = []
    try:
        for topic, key, value in _events(args):
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
            if time.perf_counter() - last >= PROGRESS_EVERY_S:
                last = time.perf_counter()
                _progress("load", sent, args.events, last - began)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    if sent < args.events:
        sys.exit(f"the simulator made only {sent} events; raise --stores or --skus")
    print(f"load: {sent:,} events on {names} in {time.perf_counter() - began:.0f} s (not measured)")


# ---------------------------------------------------------------- ceiling


async def _ceiling(args: argparse.Namespace) -> Measured:
    kinds: dict[str, EventKind] = {args.prefix + name: kind for kind, name in TOPICS.items()}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        # ensure_topics made every topic with exactly this many partitions.
        partitions = [
            TopicPartition(topic, number) for topic in kinds for number in range(args.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return await _consume_all(consumer, kinds, args.events)
    finally:
        await consumer.stop()


async def _consume_all(
    consumer: AIOKafkaConsumer, kinds: dict[str, EventKind], total: int
) -> Measured:
    count, began, last = 0, 0.0, 0.0
    while count < total:
        batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        if not batches:
            continue
        if not began:
            began = last = time.perf_counter()
        for tp, messages in batches.items():
            kind = kinds[tp.topic]
            for message in messages:
                decode(message.value, f"{tp.topic}/{tp.partition}/{message.offset}", kind)
            count += len(messages)
        if time.perf_counter() - last >= PROGRESS_EVERY_S:
            last = time.perf_counter()
            _progress("ceiling", count, total, last - began)
    return Measured(count, time.perf_counter() - began)


# ---------------------------------------------------------------- worker


def _run_worker(args: argparse.Namespace) -> Measured:
    port = _free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="kpiwatch-bench-"))
    log_path = args.worker_log or data_dir / "worker.log"
    env = {
        **os.environ,
        "KPIWATCH_KAFKA_BOOTSTRAP": args.broker,
        "KPIWATCH_TOPIC_PREFIX": args.prefix,
        # A fresh app id: a fresh consumer group (reads from the earliest offset) and fresh
        # changelog topics, so the worker starts with empty tables over the whole backlog.
        "KPIWATCH_APP_ID": f"worker-{uuid.uuid4().hex[:8]}",
        "KPIWATCH_PARTITIONS": str(args.partitions),
        "KPIWATCH_WEB_PORT": str(port),
        "KPIWATCH_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(args.source.resolve()),
    }
    command = [sys.executable, "-m", "streams.cli", "worker", "--no-console"]
    if args.variant:
        command[1:3] = [str(REPO / "bench" / "worker_variant.py"), args.variant]
    print(f"worker: starting (metrics on 127.0.0.1:{port}, log {log_path})")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=args.source, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            return asyncio.run(_watch_worker(process, log_path, port, args))
        finally:
            _stop(process)


async def _watch_worker(
    process: subprocess.Popen[bytes], log_path: Path, port: int, args: argparse.Namespace
) -> Measured:
    started = time.perf_counter()
    ready: float | None = None
    first: tuple[float, int, float] | None = None  # (time, count, cpu seconds) at first sight
    last_print, count, dead = 0.0, 0, 0
    deadline = started + args.worker_timeout
    async with httpx.AsyncClient(timeout=5.0) as client:
        while count < args.events:
            if process.poll() is not None:
                sys.exit(f"worker exited with {process.returncode}; see {log_path}")
            if time.perf_counter() > deadline:
                print(f"worker: timed out after {args.worker_timeout:.0f} s at {count:,} events")
                break
            await asyncio.sleep(0.25)
            if ready is None and READY_LINE.search(log_path.read_text(errors="replace")):
                ready = time.perf_counter()
                print(f"worker: ready after {ready - started:.1f} s")
            count, dead = await _counters(client, port)
            now = time.perf_counter()
            if count and first is None:
                first = (now, count, _cpu_seconds(process.pid))
            if first and now - last_print >= PROGRESS_EVERY_S:
                last_print = now
                _progress("worker", count, args.events, now - first[0])
    if first is None:
        sys.exit(f"worker read no events; see {log_path}")
    elapsed = time.perf_counter() - first[0]
    cpu = (_cpu_seconds(process.pid) - first[2]) / elapsed
    ready_s = "?" if ready is None else f"{ready - started:.1f}"
    note = (
        f"start-up {first[0] - started:.1f} s (ready {ready_s} s), worker CPU {cpu:.0%} of one "
        f"core, RSS {_rss_mib(process.pid):.0f} MiB, dead-lettered {dead}"
    )
    return Measured(count - first[1], elapsed, note)


async def _counters(client: httpx.AsyncClient, port: int) -> tuple[int, int]:
    try:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.HTTPError:
        return 0, 0  # web server not up yet, or too busy to answer this time
    body = response.text
    read = sum(float(value) for value in COUNTER_LINE.findall(body))
    dead = sum(float(value) for value in DEAD_LINE.findall(body))
    return int(read), int(dead)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker we started (by its PID) and wait; SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(f"worker: stopped (pid {process.pid}, exit {process.returncode})")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---------------------------------------------------------------- common


async def _delete_topics(broker: str, prefix: str) -> None:
    """Every topic of this run: inputs, alerts, dead-letter, and the worker's changelogs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        print(f"deleted {len(names)} topics with prefix {prefix!r}")
    finally:
        await admin.close()


def _progress(stage: str, done: int, total: int, seconds: float) -> None:
    rate = done / seconds if seconds > 0 else 0.0
    print(f"{stage}: {done:>10,} / {total:,} events  {seconds:6.0f} s  {rate:>9,.0f} events/s")


def _report(args: argparse.Namespace, ceiling: Measured, worker: Measured) -> None:
    ratio = worker.rate / ceiling.rate if ceiling.rate else 0.0
    print()
    print(
        f"{args.events:,} mixed events, {args.stores} stores x {args.skus} SKUs, "
        f"{args.partitions} partitions x 3 topics, {os.cpu_count()} cores"
    )
    print(f"{'':<22}{'events':>12}{'seconds':>10}{'events/s':>12}")
    print(
        f"{'ceiling (decode)':<22}{ceiling.events:>12,}{ceiling.seconds:>10.1f}"
        f"{ceiling.rate:>12,.0f}"
    )
    print(
        f"{'kpiwatch worker':<22}{worker.events:>12,}{worker.seconds:>10.1f}{worker.rate:>12,.0f}"
    )
    print(f"{'worker / ceiling':<22}{ratio:>34.2f}")
    load1, load5, _ = os.getloadavg()
    print(f"machine load average at the end: {load1:.1f} (1 min), {load5:.1f} (5 min)")
    print(f"worker{f' (variant {args.variant})' if args.variant else ''}: {worker.note}")


if __name__ == "__main__":
    main()
