"""Fail-over (issue 12): two workers of one app (static membership ids) share 4 partitions
under simulator traffic; one is stopped (SIGTERM, or kill -9) mid-stream and the survivor takes
its partitions, recovers their tables from the changelogs and goes on.

"The union of both workers' /kpis": each scope lives on one partition and each partition on one
worker, so while both run, the union is both workers' rows put together (each scope exactly
once, checked); once the survivor holds every partition, the stopped worker has no /kpis and
the union is the survivor's alone. Both must equal `kpiwatch kpis` on the events sent so far.
The alert transitions on the alerts topic equal `kpiwatch replay`'s (the whole rule library),
and each one a person should hear of reaches a webhook once (by idempotency key): after a kill
-9, a repeat is allowed only in the UNNOTED window of tests/faults/test_worker_crash.py; after a
SIGTERM, none at all, on the topic or at the webhook.

Static members do not leave the group when they stop (KIP-345; aiokafka sends no LeaveGroup
when group_instance_id is set), so after either stop the partitions move only once the broker
ends the member's session: KPIWATCH_SESSION_TIMEOUT_S is set to 6 s here (the broker's
group.min.session.timeout.ms default), against 10 s by default. Printed: from the stop to the
survivor owning every partition, to its tables of them recovered, and to /kpis matching.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from faults.test_worker_crash import (
    LEVELS,
    LIBRARY,
    UNNOTED,
    Receiver,
    _differences,
    delivered,
    events_file,
    expected_kpis,
    produce,
    receiver,
    segments,
)
from integration.support import (
    REPO,
    Services,
    WorkerFactory,
    WorkerProcess,
    alert_identity,
)

from connectors.kafka import ensure_topics
from streams.events import EVENTS_TOPIC, TOPICS

pytestmark = pytest.mark.integration

__all__ = ["receiver"]  # the webhook fixture, shared with the kill -9 test

PARTITIONS = frozenset(range(4))
SESSION_TIMEOUT_S = 6.0
# A Faust log line's time, and the pieces of its "Setting newly assigned partitions" table.
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*\{([^}]*)\}\s*\|")
READ = re.compile(
    r"(\S+-changelog): read (\d+) record\(s\) of partition\(s\) \[([^]]*)\] in ([\d.]+) s"
)


@dataclass(frozen=True)
class Given:
    """The events of both cases (the same two weeks of 12 stores as the kill -9 test), and
    what the embedded runtime makes of them."""

    lines: list[bytes]
    parts: list[list[bytes]]
    alerts: list[dict[str, Any]]
    kpis: list[dict[tuple[str, str], list[dict[str, Any]]]]  # after the first part, after all


@pytest.fixture(scope="module")
def given(tmp_path_factory: pytest.TempPathFactory) -> Given:
    path = tmp_path_factory.mktemp("failover") / "events.jsonl"
    lines = events_file(path)
    command = [sys.executable, "-m", "streams.cli", "replay", str(path), "--rules", str(LIBRARY)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout
    alerts = [json.loads(line) for line in out.splitlines()]
    assert {"stockout", "silent-order-feed", "marketplace-gmv-drop"} <= {a["rule"] for a in alerts}
    parts = segments(lines, 2)
    return Given(lines, parts, alerts, [expected_kpis(parts[0]), expected_kpis(lines)])


def owned(worker: WorkerProcess, topic: str) -> list[tuple[float, frozenset[int]]]:
    """Each assignment the worker's log shows for `topic`: (wall-clock time, partitions)."""
    found: list[tuple[float, frozenset[int]]] = []
    at, table = 0.0, False
    for line in worker.log.read_text(errors="replace").splitlines():
        stamp = STAMP.match(line)
        if stamp:
            at = log_time(stamp[1])
            table = "Setting newly assigned partitions" in line
            if table:
                found.append((at, frozenset()))
        row = ROW.match(line)
        if table and row and row[1] == topic:
            found[-1] = (at, _partitions(row[2]))
    return found


def log_time(stamp: str) -> float:
    """A log line's local time as a POSIX time."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()


def _partitions(text: str) -> frozenset[int]:
    """Faust's "{0-1, 3}" as a set."""
    found: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return frozenset(found)


def took_over(worker: WorkerProcess, topic: str, since: float) -> float | None:
    """When, after `since`, the worker was first assigned every partition of `topic`."""
    return next(
        (at for at, parts in owned(worker, topic) if at >= since and parts == PARTITIONS), None
    )


def reads(worker: WorkerProcess, since: float) -> list[tuple[float, str, int, str, float]]:
    """streams/faststore.py's "read N record(s)" lines after `since`: (time, changelog,
    records, partitions, seconds)."""
    found = []
    for line in worker.log.read_text(errors="replace").splitlines():
        stamp, read = STAMP.match(line), READ.search(line)
        if stamp and read:
            at = log_time(stamp[1])
            if at >= since:
                found.append((at, read[1], int(read[2]), read[3], float(read[4])))
    return found


async def sharing(workers: Sequence[WorkerProcess], topic: str, timeout: float = 60.0) -> None:
    """Wait until every worker owns a part of `topic` and together they own it all, once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = [owned(w, topic)[-1][1] if owned(w, topic) else frozenset() for w in workers]
        if all(latest) and sorted(p for s in latest for p in s) == sorted(PARTITIONS):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{topic} never shared: {[owned(w, topic) for w in workers]}")


def union(workers: Sequence[WorkerProcess], by: str, window: str, at: str) -> list[Any]:
    """Every worker's /kpis rows together; a scope shown by two workers is an error."""
    rows = [row for worker in workers for row in worker.kpis(by, window, at)]
    scopes = Counter(json.dumps(row["scope"], sort_keys=True) for row in rows)
    assert max(scopes.values(), default=1) == 1, [s for s, n in scopes.items() if n > 1]
    return sorted(rows, key=lambda row: sorted(row["scope"].items()))


async def matched(
    workers: Sequence[WorkerProcess],
    expected: dict[tuple[str, str], list[dict[str, Any]]],
    timeout: float = 120.0,
) -> float:
    """Wait until the union of the workers' /kpis equals `expected` (`expected_kpis`: what
    `kpiwatch kpis` prints) at every level; returns when it first did (time.monotonic())."""
    want = dict(expected)
    at = want.pop(("at", ""))[0]["at"].isoformat()
    deadline = time.monotonic() + timeout
    got: dict[tuple[str, str], Any] = {}
    while time.monotonic() < deadline:
        try:
            got = {(by, w): union(workers, by, w, at) for by, w in LEVELS}
        except httpx.HTTPError:
            got = {}
        if got == want:
            return time.monotonic()
        await asyncio.sleep(0.25)
    for level, rows in want.items():
        assert got.get(level) == rows, f"{level} differs: {_differences(got.get(level), rows)}"
    raise AssertionError("unreachable")


async def start_pair(
    services: Services, prefix: str, worker_factory: WorkerFactory, receiver: Receiver
) -> list[WorkerProcess]:
    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, len(PARTITIONS))
    extra = {
        "KPIWATCH_REDIS_URL": services.redis_url,
        "KPIWATCH_ROLLUP_IDLE_S": "900",  # no source taken as idle: judging as replay does
        "KPIWATCH_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
    }
    workers = [
        worker_factory(
            prefix, rules=LIBRARY, webhook=receiver.url, instance_id=f"{prefix}{n}", extra=extra
        )
        for n in ("a", "b")
    ]
    for worker in workers:
        worker.spawn()
    for worker in workers:
        await asyncio.to_thread(worker.wait_ready)
    for topic in (EVENTS_TOPIC, "rollups", "alerts"):
        await sharing(workers, prefix + topic)
    return workers


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
async def test_the_survivor_takes_over_and_nothing_is_lost_counted_twice_or_told_twice(
    how: str,
    given: Given,
    services: Services,
    prefix: str,
    worker_factory: WorkerFactory,
    receiver: Receiver,
) -> None:
    began = time.monotonic()
    survivor, stopped = await start_pair(services, prefix, worker_factory, receiver)
    await produce(services, prefix, given.parts[0], pace=2.0)
    await matched([survivor, stopped], given.kpis[0])
    taken = owned(stopped, prefix + EVENTS_TOPIC)[-1][1]

    producing = asyncio.create_task(produce(services, prefix, given.parts[1], pace=10.0))
    await asyncio.sleep(random.Random(how).uniform(1.5, 3.0))
    stop_wall, stop_at = time.time(), time.monotonic()
    if how == "sigterm":
        await asyncio.to_thread(stopped.stop)
    else:
        stopped.kill()
    await producing
    sent_at = time.monotonic()
    match_at = await matched([survivor], given.kpis[1])

    topics = (EVENTS_TOPIC, "rollups", "alerts")
    found = {topic: took_over(survivor, prefix + topic, stop_wall) for topic in topics}
    took = {topic: at for topic, at in found.items() if at is not None}
    assert len(took) == len(topics), (found, survivor.tail())
    # The survivor read the changelogs of the partitions it took over, and only those.
    recovered = reads(survivor, stop_wall)
    assert sorted((name, parts) for _, name, _, parts, _ in recovered) == [
        (f"{prefix}kpiwatch-{table}-changelog", ", ".join(map(str, sorted(taken))))
        for table in ("rollup-state", "state")
    ], (taken, recovered)

    alerts, audible, repeats = await delivered(services, prefix, given.alerts, receiver)
    on_topic = Counter(map(alert_identity, alerts))
    for key in repeats:
        first = min(t for t, alert in receiver.got if alert["key"] == key)
        assert how == "kill-9", (key, "repeated after a clean stop")
        assert 0 <= stop_at - first <= UNNOTED, (key, stop_at - first)
    if how == "sigterm":
        assert max(on_topic.values()) == 1, [a for a, n in on_topic.items() if n > 1]

    print(
        f"\n{how}: {len(given.lines):,} events; stopped {stop_at - began:.1f} s in; survivor "
        f"owned all partitions after {max(took.values()) - stop_wall:.1f} s "
        f"({', '.join(f'{t} {at - stop_wall:.1f} s' for t, at in took.items())}); "
        + "; ".join(
            f"{name.removeprefix(prefix)} {n:,} record(s) of [{parts}] read in {secs} s "
            f"(done {at - stop_wall:.1f} s after the stop)"
            for at, name, n, parts, secs in recovered
        )
        + f"; /kpis matched {match_at - stop_at:.1f} s after the stop, "
        f"{match_at - sent_at:.1f} s after the last event was sent; "
        f"{len(given.alerts)} transitions ({len(alerts)} records on the topic, "
        f"{sum(n - 1 for n in on_topic.values())} repeated); {len(audible)} delivered, "
        f"{len(repeats)} repeated; {time.monotonic() - began:.0f} s in all"
    )
