"""Delivery that loses nothing, on real workers, Kafka and Redis: alerts written to the alerts
topic reach a local webhook once each, in order, through an outage, a worker killed between
send and commit, and a rate limit shared by two workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.sinks_support import (
    Robot,
    alert,
    make_worker,
    produce,
    sinks_file,
    wait_for,
)
from integration.support import Services, WorkerProcess

from rules.alerts import Alert

pytestmark = pytest.mark.integration


def wave(stores: int, skus: int) -> list[Alert]:
    """Each SKU fires, then (later in the stream) resolves."""
    firing = [alert(f"s{s}", f"K{k}") for s in range(stores) for k in range(skus)]
    resolved = [alert(f"s{s}", f"K{k}", "resolved", 5) for s in range(stores) for k in range(skus)]
    return firing + resolved


def assert_once_in_order(robot: Robot, sent: list[Alert]) -> None:
    keys = robot.keys()
    assert sorted(keys) == sorted(a.key for a in sent), "every alert, exactly once"
    statuses: dict[str, list[str]] = {}
    for item in robot.alerts():
        statuses.setdefault(item["fingerprint"], []).append(item["status"])
    assert all(s == ["firing", "resolved"] for s in statuses.values())


async def test_an_outage_loses_nothing_and_sends_nothing_twice(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    robot: Robot,
    tmp_path: Path,
) -> None:
    route = "route:\n  sinks: [robot]\n  group_by: [store]\n  group_wait: 0.5s\n"
    route += "  group_interval: 0.5s\n"
    worker = make_worker(
        worker_factory, services, prefix, robot, sinks_file(tmp_path, "", route), "w0"
    )
    worker.start()
    robot.down = True
    sent = wave(stores=3, skus=10)
    await produce(services.kafka_bootstrap, f"{prefix}alerts", sent)
    await wait_for(lambda: robot.refused >= 3, 30, "the worker never tried the robot")
    robot.down = False
    await wait_for(lambda: len(robot.keys()) >= len(sent), 60, "not every alert arrived")
    await asyncio.sleep(3)  # anything sent twice would arrive by now
    assert_once_in_order(robot, sent)
    # Digests, not one request per alert: three stores, a handful of requests.
    assert len(robot.requests) < len(sent) / 2


async def test_a_worker_killed_after_sending_does_not_send_again(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    robot: Robot,
    tmp_path: Path,
) -> None:
    route = "route:\n  sinks: [robot]\n  group_by: [store]\n  group_wait: 0s\n"
    route += "  group_interval: 0.5s\n"
    worker = make_worker(
        worker_factory, services, prefix, robot, sinks_file(tmp_path, "", route), "w0"
    )
    worker.start()
    sent = wave(stores=2, skus=5)
    await produce(services.kafka_bootstrap, f"{prefix}alerts", sent)
    await wait_for(lambda: len(robot.keys()) >= len(sent), 60, "not every alert arrived")
    # Killed before Faust's next offset commit (every 2.8 s): the restarted worker reads the
    # same alerts again, and the idempotency keys in Redis hold them back.
    assert worker.process is not None
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    worker.process = None
    worker.start()
    await asyncio.sleep(8)
    assert_once_in_order(robot, sent)


async def test_two_workers_share_one_robots_rate_limit_and_lose_nothing(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    robot: Robot,
    tmp_path: Path,
) -> None:
    limit, per = 3, 2.0
    extra = f"    rate_limit: {{messages: {limit}, per: {per}s}}\n"
    # Every SKU its own group, no waiting: only the rate limit can merge them.
    route = "route:\n  sinks: [robot]\n  group_by: [store, sku]\n  group_wait: 0s\n"
    route += "  group_interval: 0s\n"
    sinks = sinks_file(tmp_path, extra, route)
    workers = [
        make_worker(worker_factory, services, prefix, robot, sinks, f"w{n}") for n in range(2)
    ]
    for worker in workers:
        worker.start()
    await asyncio.sleep(5)  # let the group settle with both members
    sent = wave(stores=4, skus=10)
    await produce(services.kafka_bootstrap, f"{prefix}alerts", sent)
    await wait_for(lambda: len(robot.keys()) >= len(sent), 120, "not every alert arrived")
    await asyncio.sleep(2)
    assert_once_in_order(robot, sent)
    times = [t for t, _ in robot.requests]
    # Measured at the receiver, so allow for a few ms of network jitter against Redis's clock.
    busiest = max(sum(1 for u in times if t - per + 0.05 < u <= t) for t in times)
    assert busiest <= limit, times
    assert all(counter(w, "delivered") > 0 for w in workers), "both workers should have sent some"


def counter(worker: WorkerProcess, outcome: str) -> float:
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kpiwatch_deliveries_total{")
        and 'sink="robot"' in line
        and f'outcome="{outcome}"' in line
    )
