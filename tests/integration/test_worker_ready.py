"""A worker's probes on the real broker: /ready answers 503 while the state changelog is read
(with how far the read is) and 200 once it is done; /health answers all along."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from integration.conftest import WorkerFactory
from integration.support import Services, WorkerProcess

from connectors.kafka import ensure_topics
from streams.state import RS

pytestmark = pytest.mark.integration

PARTITIONS = 4
RECORDS = 400_000  # a second or more of reading: long enough to be seen recovering


async def fill_changelog(bootstrap: str, topic: str) -> None:
    """Keys of a kind no rule reads, spread over the partitions as the worker writes its own."""
    await ensure_topics(bootstrap, [topic], PARTITIONS, compacted=True)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    try:
        value = b'{"probe": "' + b"x" * 48 + b'"}'
        pending = []
        for n in range(RECORDS):
            partition = n % PARTITIONS
            key = f"{partition}{RS}probe{RS}{n}".encode()
            pending.append(await producer.send(topic, value, key=key, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def poll(worker: WorkerProcess, until: float) -> list[tuple[float, int, dict[str, Any]]]:
    """(time, status, body) of /ready every 20 ms until it has answered 200 five times."""
    seen: list[tuple[float, int, dict[str, Any]]] = []
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < until:
            if worker.process is None or worker.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{worker.tail()}")
            try:
                response = client.get(f"{worker.url}/ready")
            except httpx.TransportError:  # not listening yet
                time.sleep(0.02)
                continue
            seen.append((time.monotonic(), response.status_code, response.json()))
            if sum(1 for _, status, _ in seen if status == 200) >= 5:
                break
            time.sleep(0.02)
    return seen


def test_ready_only_once_the_tables_are_recovered(
    services: Services, worker_factory: WorkerFactory, prefix: str
) -> None:
    changelog = f"{prefix}kpiwatch-state-changelog"
    asyncio.run(fill_changelog(services.kafka_bootstrap, changelog))
    worker = worker_factory(prefix, extra={"KPIWATCH_PARTITIONS": str(PARTITIONS)})
    started = time.monotonic()
    worker.spawn()
    seen = poll(worker, started + 120)

    statuses = [status for _, status, _ in seen]
    assert 503 in statuses, f"never seen recovering: {statuses[:20]}\n{worker.tail()}"
    assert statuses[-1] == 200, worker.tail()
    first_ready = statuses.index(200)
    assert set(statuses[:first_ready]) == {503}
    assert set(statuses[first_ready:]) == {200}, "ready, then not ready without a rebalance"
    loading = [
        load
        for _, _, body in seen
        for load in body.get("loading", [])
        if load["topic"] == changelog
    ]
    assert loading, "no 503 named the changelog being read"
    # 0 until the end offsets are known, then every offset of the changelog.
    assert {load["offsets_total"] for load in loading} - {0} == {RECORDS}, loading
    assert all(0 <= load["offsets_read"] <= load["offsets_total"] for load in loading), loading
    assert seen[first_ready][2] == {"status": "ready"}

    read = re.search(
        rf"{re.escape(changelog)}: read (\d+) record\(s\) of partition\(s\) "
        r"\[0, 1, 2, 3\] in ([\d.]+) s",
        worker.log.read_text(errors="replace"),
    )
    assert read is not None, worker.tail()
    assert int(read[1]) == RECORDS
    health = httpx.get(f"{worker.url}/health", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    progress = [load["offsets_read"] for load in loading]
    print(
        f"\n/ready: offsets read as /ready saw them: {progress}"
        f"\n/ready: first answer {seen[0][0] - started:.1f} s after spawn (503), 200 at "
        f"{seen[first_ready][0] - started:.1f} s; changelog of {RECORDS:,} records read in "
        f"{read[2]} s"
    )


def test_a_worker_with_no_partition_is_ready(
    services: Services, worker_factory: WorkerFactory, prefix: str
) -> None:
    """More workers than partitions: the extra one holds nothing and idles, ready (a rollout
    must not wait for it forever)."""
    extra = {"KPIWATCH_PARTITIONS": "1"}
    first = worker_factory(prefix, instance_id=f"{prefix}a", extra=extra)
    first.start()
    second = worker_factory(prefix, instance_id=f"{prefix}b", extra=extra)
    second.spawn()
    for worker in (first, second):
        seen = poll(worker, time.monotonic() + 90)
        assert seen, worker.tail()
        assert seen[-1][1:] == (200, {"status": "ready"}), worker.tail()
