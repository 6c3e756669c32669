"""Guarantee 8, back-pressure: a producer faster than the worker for 2 minutes. The worker's memory
stays bounded (its read-ahead is a batch or two: Faust's stream buffer and the fetcher's bytes,
streams.app.build_app), the lag grows while the producer outruns it and then drains, and no event
is dropped: every one produced is counted (`kpiwatch_events_in_total`), none dead-lettered.

The worker's own pace is measured first on a backlog of the same kind of messages (one event each,
its slowest input); the producer then sends at OVERLOAD times that pace for PRODUCE_S seconds.
RSS (from /proc), the lag (end offsets minus the worker's committed offsets) and the counts are
printed every SAMPLE_S seconds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faults.test_worker_crash import LIBRARY
from integration.support import Services, WorkerFactory, WorkerProcess

from connectors.kafka import EventProducer, ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, TOPICS, encode_message

pytestmark = [pytest.mark.integration, pytest.mark.faults]

START = datetime(2026, 9, 1, tzinfo=UTC)
CALIBRATION = 15_000  # events the worker's pace is measured on
OVERLOAD = 1.6  # producer pace / the worker's
PRODUCE_S = 120.0
SAMPLE_S = 5.0
RSS_LIMIT_MIB = 1024  # state of ~0.5M events plus a bounded read-ahead fits well under it
PARTITIONS = 4


@dataclass
class Sample:
    at: float
    produced: int
    counted: int
    lag: int
    rss_mib: float


@dataclass
class Watch:
    worker: WorkerProcess
    group: str
    topic: str
    bootstrap: str
    began: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    produced: int = 0

    async def sample(self, client: httpx.AsyncClient) -> Sample:
        counted = await counted_events(client, self.worker)
        sample = Sample(
            time.monotonic() - self.began,
            self.produced,
            counted,
            await group_lag(self.bootstrap, self.group, self.topic),
            rss_mib(self.worker),
        )
        self.samples.append(sample)
        print(
            f"{sample.at:6.0f} s  produced {sample.produced:>8,}  counted {sample.counted:>8,}  "
            f"lag {sample.lag:>8,} messages  RSS {sample.rss_mib:6.0f} MiB",
            flush=True,
        )
        return sample


def messages(count: int) -> list[tuple[bytes, bytes]]:
    """`count` simulated events, one per message (key: the store, as connectors send them)."""
    found: list[tuple[bytes, bytes]] = []
    for event in simulate(START, hours=24 * 120, stores=20, skus=10, seed=8, incident_rate=0.2):
        found.append((event.store_id.encode(), encode_message([event])))
        if len(found) == count:
            return found
    raise AssertionError(f"the simulator gave only {len(found)} events")


def rss_mib(worker: WorkerProcess) -> float:
    assert worker.process is not None, "the worker went away"
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def counted_events(client: httpx.AsyncClient, worker: WorkerProcess) -> int:
    stats: dict[str, Any] = (await client.get(f"{worker.url}/stats", timeout=10.0)).json()
    return int(stats.get("kpiwatch_events_in_total", 0))


async def dead_lettered(client: httpx.AsyncClient, worker: WorkerProcess) -> int:
    stats: dict[str, Any] = (await client.get(f"{worker.url}/stats", timeout=10.0)).json()
    return int(stats.get("kpiwatch_events_dead_lettered_total", 0))


async def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages of `topic` past the offsets the worker's group committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(
            ends[tp] - max(0, committed[tp].offset if tp in committed else 0) for tp in partitions
        )
    finally:
        await consumer.stop()
        await admin.close()


async def worker_group(bootstrap: str, prefix: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)]
            if groups:
                [group] = groups
                return group
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise AssertionError("the worker's consumer group never appeared")


async def send(producer: EventProducer, topic: str, batch: list[tuple[bytes, bytes]]) -> None:
    for key, value in batch:
        await producer.send_raw(topic, value, key=key)


async def test_a_producer_faster_than_the_worker_for_2_minutes(
    services: Services, prefix: str, worker_factory: WorkerFactory
) -> None:
    topic = prefix + EVENTS_TOPIC
    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, PARTITIONS)
    worker = worker_factory(prefix, rules=LIBRARY, extra={"KPIWATCH_ROLLUP_IDLE_S": "900"})
    worker.start()
    group = await worker_group(services.kafka_bootstrap, prefix)

    # The worker's pace on a backlog of one-event messages, measured from its first count.
    pending = messages(CALIBRATION)
    async with (
        EventProducer(services.kafka_bootstrap, prefix) as producer,
        httpx.AsyncClient() as client,
    ):
        await send(producer, topic, pending)
        await producer.flush()
        first = time.monotonic()
        while await counted_events(client, worker) == 0:
            first = time.monotonic()
            await asyncio.sleep(0.1)
        while (counted := await counted_events(client, worker)) < CALIBRATION:
            assert time.monotonic() - first < 300, f"calibration stuck at {counted}"
            await asyncio.sleep(0.2)
        pace = CALIBRATION / (time.monotonic() - first)
        rate = pace * OVERLOAD
        total = CALIBRATION + int(rate * PRODUCE_S)
        batch = messages(total)[CALIBRATION:]
        print(f"\nworker pace {pace:,.0f} events/s; producing {rate:,.0f}/s for {PRODUCE_S:.0f} s")

        watch = Watch(worker, group, topic, services.kafka_bootstrap)
        watch.produced = CALIBRATION
        baseline = await watch.sample(client)
        began = time.monotonic()
        next_sample = began + SAMPLE_S
        step = 0.25
        sent = 0
        while sent < len(batch):
            due = min(len(batch), int((time.monotonic() - began + step) * rate))
            await send(producer, topic, batch[sent:due])
            watch.produced += due - sent
            sent = due
            if time.monotonic() >= next_sample:
                await watch.sample(client)
                next_sample += SAMPLE_S
            await asyncio.sleep(max(0.0, began + (sent / rate) - time.monotonic()))
        await producer.flush()
        produced_for = time.monotonic() - began
        at_end = await watch.sample(client)

        drain_began = time.monotonic()
        while (counted := await counted_events(client, worker)) < total:
            assert time.monotonic() - drain_began < 900, f"drain stuck at {counted}/{total}"
            await asyncio.sleep(SAMPLE_S)
            await watch.sample(client)
        drained_in = time.monotonic() - drain_began
        deadline = time.monotonic() + 60
        while (last := await watch.sample(client)).lag > 0 and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
        dead = await dead_lettered(client, worker)

    peak = max(s.rss_mib for s in watch.samples)
    max_lag = max(s.lag for s in watch.samples)

    def per_event(a: Sample, b: Sample) -> float:
        """RSS growth per event counted between two samples (KiB): the state's growth. If the
        backlog were held in memory, it would be larger while the lag grows than while it
        drains."""
        return (b.rss_mib - a.rss_mib) * 1024 / max(1, b.counted - a.counted)

    print(
        f"produced {total:,} events ({produced_for:.0f} s at {OVERLOAD}x the worker's pace); "
        f"lag {baseline.lag:,} -> {at_end.lag:,} at the end of production (max {max_lag:,}), "
        f"drained {drained_in:.0f} s later; RSS {baseline.rss_mib:.0f} MiB -> peak {peak:.0f} "
        f"MiB (KiB per event counted: {per_event(baseline, at_end):.2f} while the lag grew, "
        f"{per_event(at_end, last):.2f} while it drained); counted {last.counted:,}, "
        f"dead-lettered {dead}"
    )
    assert worker.process is not None, "the worker went away"
    assert worker.process.poll() is None, worker.tail()
    assert worker.starts == 1
    assert produced_for < PRODUCE_S * 1.5, "the producer could not keep its pace"
    assert at_end.lag > max(1000, pace * PRODUCE_S * (OVERLOAD - 1) / 4), "the lag never grew"
    assert last.lag == 0
    assert last.counted == total
    assert dead == 0
    assert peak < RSS_LIMIT_MIB, f"RSS peaked at {peak:.0f} MiB"
    worker.stop()
