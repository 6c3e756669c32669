"""Guarantee 4, Redis restart and loss: a worker on the shared Kafka and a Redis of the test's own
delivers alert transitions to a rate-limited webhook (2 requests a second) while that Redis is
stopped and started again, once with its data (a snapshot taken just before) and once empty
(its data folder deleted). Some transitions arrive twice on the alerts topic, as a restarted
pipeline re-emits the batch it was cut in.

What each case proves, through the worker's real code and the receiver's own clock:
- nothing is lost and nothing crashes: every transition no silence or acknowledgement holds back
  reaches the webhook, in order per fingerprint, and the worker runs on without a restart or a
  traceback;
- the rate limit holds in every 1 s window, also while Redis is away and after its window was
  lost (each worker keeps count of its own sends);
- while Redis is away: silences read before still mute, an acknowledgement does not (the
  acknowledged alert's next transition is sent), and a transition read twice is sent twice if it
  was sent before Redis went away (a possible repeat beats a possible loss);
- after Redis is back with its data, every transition sent before or during the outage that is
  read again is dropped: no duplicate at all;
- after Redis is back empty, silences and acknowledgements are gone (what they muted is sent)
  and a transition sent before the loss that is read again is sent once more, never twice more;
  what was sent during the outage is still dropped.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from faults.conftest import OwnServices
from integration.sinks_support import Robot, key_of, make_worker, produce, wait_for
from integration.support import Services, WorkerFactory, WorkerProcess
from redis.asyncio import Redis

from rules.alerts import Alert, fingerprint
from rules.schema import Severity
from sinks.silence import SilenceStore, namespace, new_silence
from streams.notify import shared_redis

pytestmark = [pytest.mark.integration, pytest.mark.faults]

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
LIMIT, PER = 2, 1.0
TRICKLE = 10  # transitions sent one by one, 0.15 s apart, while Redis is away and after
Case = Literal["kept", "lost"]


def transition(store: str, sku: str, minute: int = 0, severity: Severity = "critical") -> Alert:
    labels = {"platform": "amazon", "marketplace": "US", "store": store, "sku": sku}
    return Alert(
        rule="stockout",
        severity=severity,
        status="firing",
        labels=labels,
        value=Decimal(0),
        threshold="<= 0",
        window_start=None,
        window_end=None,
        at=AT + timedelta(minutes=minute),
        kpi="available",
        fingerprint=fingerprint("stockout", labels),
        summary=f"{store} {sku} {severity}",
    )


def sinks_file(tmp_path: Path) -> Path:
    """Every transition its own group, sent at once: only the rate limit merges them."""
    path = tmp_path / "sinks.yaml"
    path.write_text(
        "sinks:\n  - name: robot\n    type: webhook\n    url: {env: ROBOT_URL}\n"
        f"    rate_limit: {{messages: {LIMIT}, per: {PER}s}}\n"
        "route:\n  sinks: [robot]\n  group_by: [store, sku]\n"
        "  group_wait: 0s\n  group_interval: 0s\n"
        "delivery:\n  attempts: 40\n  base_delay: 0.2\n  max_delay: 1s\n"
    )
    return path


class Stream:
    """What the test sends to the worker's alerts topic, and what should reach the robot."""

    def __init__(self, services: Services, prefix: str) -> None:
        self.bootstrap = services.kafka_bootstrap
        self.topic = f"{prefix}alerts"
        self.sent: list[Alert] = []
        self.muted: set[str] = set()

    async def send(self, *alerts: Alert, muted: bool = False) -> None:
        await produce(self.bootstrap, self.topic, list(alerts))
        self.sent += alerts
        if muted:
            self.muted.update(a.key for a in alerts)

    async def trickle(self, store: str) -> None:
        for n in range(TRICKLE):
            await self.send(transition(store, f"K{n}"))
            await asyncio.sleep(0.15)

    def expected(self) -> list[str]:
        """Each transition that should be delivered, once, in the order it was sent."""
        return list(dict.fromkeys(a.key for a in self.sent if a.key not in self.muted))


async def delivered(robot: Robot, stream: Stream, what: str) -> None:
    want = set(stream.expected())
    await wait_for(lambda: want <= set(robot.keys()), 60, f"not delivered: {what}")


@pytest.fixture
async def own_redis(own_services: OwnServices) -> AsyncIterator[Redis]:
    own_services.start("redis")
    redis = Redis.from_url(own_services.services.redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def restart(own_services: OwnServices, case: Case, worker_client: Redis) -> None:
    """Start Redis again: with its snapshot, or with its data folder gone. A client made as the
    worker makes its own, connected before the restart, works at its first command after it
    (a plain client's first command on its old connection fails: the worker would skip a dedupe
    check or an acknowledgement then)."""
    if case == "lost":
        shutil.rmtree(own_services.root / "redis-data")
    own_services.start("redis")
    size = await worker_client.dbsize()  # its first command since the restart
    assert (size == 0) == (case == "lost")


@pytest.mark.parametrize("case", ["kept", "lost"])
async def test_redis_restart_loses_no_alert_and_bounds_repeats(
    case: Case,
    services: Services,
    own_services: OwnServices,
    own_redis: Redis,
    worker_factory: WorkerFactory,
    prefix: str,
    robot: Robot,
    tmp_path: Path,
) -> None:
    store = SilenceStore(own_redis, namespace(prefix))
    await store.add(new_silence(["store=quiet"], 3600, "ops", "stocktake"))
    worker = make_worker(
        worker_factory,
        Services(services.kafka_bootstrap, own_services.services.redis_url),
        prefix,
        robot,
        sinks_file(tmp_path),
        "w0",
    )
    worker.start()
    stream = Stream(services, prefix)
    before = [transition("a", f"K{n}") for n in range(3)]
    acked = transition("acked", "K0", 0, "warning")
    await stream.send(*before, acked)
    await stream.send(transition("quiet", "K0"), muted=True)
    await delivered(robot, stream, "before the restart")
    await store.acknowledge(acked.fingerprint, "ops")

    # Redis goes away (a snapshot on disk first, as a persistent Redis has) until everything
    # sent meanwhile has arrived.
    worker_client = shared_redis(own_services.services.redis_url)
    assert await worker_client.ping()
    await own_redis.save()
    own_services.stop("redis")
    await stream.send(before[0], before[1])  # read again: sent again, nobody can tell
    await stream.send(transition("quiet", "K1"), muted=True)  # the silence read before holds
    await stream.send(transition("acked", "K0", 1))  # the acknowledgement is unknown: sent
    await stream.trickle("down")
    await delivered(robot, stream, "while Redis was away")
    try:
        await restart(own_services, case, worker_client)
    finally:
        await worker_client.aclose()

    lost = case == "lost"
    down = [a for a in stream.sent if a.labels["store"] == "down"]
    await stream.send(before[2], before[2], down[0], down[1])  # all read again
    await stream.send(transition("quiet", "K2"), muted=not lost)
    await stream.send(transition("acked", "K0", 2, "warning"), muted=not lost)
    await stream.trickle("back")
    await delivered(robot, stream, "after the restart")
    await asyncio.sleep(3)  # anything sent twice would arrive by now

    repeats = {key: n - 1 for key, n in Counter(robot.keys()).items() if n > 1}
    again = [before[0], before[1], *([before[2]] if lost else [])]
    assert repeats == {a.key: 1 for a in again}, repeats
    assert_once_in_order(robot, stream)
    assert_rate_limit(robot)
    assert_alive(worker)
    print(
        f"{case}: {len(set(robot.keys()))} transitions delivered, "
        f"{sum(repeats.values())} repeats, {len(robot.requests)} requests"
    )


def assert_once_in_order(robot: Robot, stream: Stream) -> None:
    """Every expected transition arrived, nothing muted did; each fingerprint's transitions
    first arrived in the order they were sent."""
    firsts = list(dict.fromkeys(robot.keys()))
    assert set(firsts) == set(stream.expected())
    for fp in {a.fingerprint for a in stream.sent}:
        assert [k for k in firsts if k.startswith(fp)] == [
            k for k in stream.expected() if k.startswith(fp)
        ]
    assert all(key_of(a) not in stream.muted for a in robot.alerts())


def assert_rate_limit(robot: Robot) -> None:
    """At most LIMIT requests in any PER seconds, measured on arrival (a few ms of slack)."""
    times = [t for t, _ in robot.requests]
    busiest = max(sum(1 for u in times if t - PER + 0.05 < u <= t) for t in times)
    assert busiest <= LIMIT, times


def assert_alive(worker: WorkerProcess) -> None:
    assert worker.process is not None
    assert worker.process.poll() is None, worker.tail()
    assert worker.starts == 1
    log = worker.log.read_text(errors="replace")
    assert "Crashed reason" not in log, worker.tail(120)  # what Faust logs when an agent dies
    assert "Traceback" not in log, worker.tail(120)
    assert "dedupe ledger unavailable" in log  # Redis really was away while it worked
