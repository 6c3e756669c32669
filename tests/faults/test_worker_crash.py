"""kill -9 of a worker at five points while 50,000 simulated events stream in: mid-stream, then
mid-stream again and once more while it recovers its tables, right after an alert appeared,
and twice more at random mid-stream.
After each restart and at the end its /kpis equal `kpiwatch kpis` on the events sent so far;
every transition `kpiwatch replay` gives (the whole rule library) is on the alerts topic, and
reaches a webhook exactly once. The one repeat kpiwatch cannot rule out (a kill after the
receiver answered and before the worker noted it, a few milliseconds) is asserted to have
happened only then, and the receiver can drop it by its idempotency key."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.support import REPO, Services, WorkerProcess, alert_identity, read_topic

from connectors.kafka import EventProducer, ensure_topics
from connectors.simulator import simulate
from rules.load import load_paths
from streams import faststore
from streams.embedded import reader
from streams.embedded import replay as run_replay
from streams.events import EVENTS_TOPIC, TOPICS, RawRecord, decode, encode, pack
from streams.query import kpi_rows

pytestmark = [pytest.mark.integration, pytest.mark.faults]

START = datetime(2026, 11, 14, tzinfo=UTC)  # two weeks, Thanksgiving (a mute calendar) in it
LIBRARY = REPO / "rules" / "library"
LEVELS = (("store,sku", "24h"), ("store", "7d"), ("store,campaign", "1d"), ("marketplace", "1d"))
KILLS = ("mid-stream", "recovery", "after-alert", "mid-stream", "mid-stream")
# The window in which a repeat is possible: receiver answered, worker not yet noted it.
UNNOTED = 0.05


@dataclass
class Receiver:
    """A webhook that records each alert it got and when it answered."""

    url: str = ""
    got: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def keys(self) -> Counter[str]:
        return Counter(alert["key"] for _, alert in self.got)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            answered = time.monotonic()
            with lock:
                found.got.extend((answered, alert) for alert in body["alerts"])

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def events_file(path: Path) -> list[bytes]:
    events = simulate(START, hours=330, stores=12, skus=5, seed=1, incident_rate=0.3)
    lines = [encode(event) for event in events]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def segments(lines: list[bytes], count: int) -> list[list[bytes]]:
    """`count` parts, each cut where the stream reaches a new UTC hour (where `pack` closes
    every group), so producing them one after the other groups events as replay does."""
    hours = [int(decode(line, "cut").occurred_at.timestamp()) // 3600 for line in lines]
    cuts = [0]
    for part in range(1, count):
        at = len(lines) * part // count
        cuts.append(next(n for n in range(at, len(lines)) if hours[n] > hours[n - 1]))
    cuts.append(len(lines))
    return [lines[a:b] for a, b in itertools.pairwise(cuts)]


def expected_kpis(lines: list[bytes]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """What `kpiwatch kpis` prints for these events (the same code, in-process)."""
    from streams.embedded import Engine

    engine = Engine(load_paths([LIBRARY]))
    records = (RawRecord(source=str(n), value=line) for n, line in enumerate(lines))
    run_replay(records, engine.rules, lambda alert: None, engine=engine)
    view = reader(engine.state)
    at = view.newest_event()
    return {(by, w): kpi_rows(view, by, w, at) for by, w in LEVELS} | {("at", ""): [{"at": at}]}


async def produce(services: Services, prefix: str, lines: list[bytes], pace: float) -> None:
    """Send like `kpiwatch produce` (packed as replay groups them), spread over about `pace`
    seconds so that kills land mid-stream."""
    groups = list(pack(decode(line, str(n)) for n, line in enumerate(lines)))
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        step = max(1, len(groups) // 20)
        for start in range(0, len(groups), step):
            for group in groups[start : start + step]:
                await producer.send_message(group)
            await producer.flush()
            await asyncio.sleep(pace / 20)


async def caught_up(worker: WorkerProcess, lines: list[bytes], timeout: float = 120.0) -> None:
    """Wait until the worker's /kpis equal the offline figures for `lines` at every level."""
    want = expected_kpis(lines)
    at = want.pop(("at", ""))[0]["at"].isoformat()
    deadline = time.monotonic() + timeout
    got: dict[tuple[str, str], Any] = {}
    while time.monotonic() < deadline:
        try:
            got = {(by, w): worker.kpis(by, w, at) for by, w in LEVELS}
        except httpx.HTTPError:
            got = {}
        if got == want:
            return
        await asyncio.sleep(1.0)
    _diagnose(worker)
    for level, rows in want.items():
        assert got.get(level) == rows, f"{level} differs: {_differences(got.get(level), rows)}"


def _diagnose(worker: WorkerProcess) -> None:
    """What a failed catch-up looked like from inside (in the test's output)."""
    import os

    metrics = httpx.get(f"{worker.url}/metrics", timeout=10).text
    print(
        "\n".join(
            line
            for line in metrics.splitlines()
            if line.startswith(
                (
                    "kpiwatch_events_in",
                    "kpiwatch_messages_skipped",
                    "kpiwatch_consumer_lag",
                    "kpiwatch_kafka_messages_written",
                )
            )
        )
    )
    if worker.process is not None and os.environ.get("KPIWATCH_PYSPY"):
        print(
            subprocess.run(
                [os.environ["KPIWATCH_PYSPY"], "dump", "--pid", str(worker.process.pid)],
                capture_output=True,
                text=True,
            ).stdout
        )


def _differences(got: list[dict[str, Any]] | None, want: list[dict[str, Any]]) -> list[Any]:
    """The first few values that differ, row by row, for a message a person can read."""
    found: list[Any] = []
    for have, need in zip(got or [], want, strict=False):
        if have != need:
            keys = need["values"].keys() | have["values"].keys()
            found.append(
                (
                    need["scope"],
                    {
                        k: (have["values"].get(k), need["values"].get(k))
                        for k in sorted(keys)
                        if have["values"].get(k) != need["values"].get(k)
                    },
                )
            )
    if got is not None and len(got) != len(want):
        found.append(f"{len(got)} rows, want {len(want)}")
    return found[:5]


async def delivered(
    services: Services, prefix: str, expected: list[dict[str, Any]], receiver: Receiver
) -> tuple[list[dict[str, Any]], set[str], list[str]]:
    """Check that every transition replay gives is on the alerts topic and every audible one
    reached the webhook; returns the topic's records, the audible keys and those repeated."""
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= len(expected)
    )
    assert set(map(alert_identity, alerts)) == set(map(alert_identity, expected))
    audible = {
        f"{a['fingerprint']}:{a['status']}:{a['severity']}:{datetime.fromisoformat(a['at'])}".replace(
            " ", "T"
        )
        for a in expected
        if not a["muted"]
    }
    deadline = time.monotonic() + 60
    while set(receiver.keys()) != audible and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    if set(receiver.keys()) != audible:  # say where the missing ones went, if anywhere
        dead = await read_topic(
            services.kafka_bootstrap, prefix + "alerts-dead-letter", until=bool, timeout=5.0
        )
        missing = audible - set(receiver.keys())
        assert not missing, (missing, [d["reason"] for d in dead])
    assert set(receiver.keys()) == audible
    return alerts, audible, [key for key, count in receiver.keys().items() if count > 1]


async def kill(
    worker: WorkerProcess,
    how: str,
    alerts_seen: int,
    services: Services,
    prefix: str,
    rng: random.Random,
) -> str:
    """Kill the worker the way `how` says; returns what the kill hit."""
    if how == "after-alert":
        records = await read_topic(
            services.kafka_bootstrap,
            prefix + "alerts",
            until=lambda r: len(r) > alerts_seen,
            timeout=60.0,
        )
        assert len(records) > alerts_seen, "no alert came to kill after"
        worker.kill()
        return f"after alert {len(records)}"
    await asyncio.sleep(rng.uniform(0.5, 3.0))
    worker.kill()
    return "mid-stream"


async def kill_in_recovery(worker: WorkerProcess) -> str:
    """Start, and kill as soon as it is restoring its tables from the changelogs."""
    worker.spawn()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = worker.log.read_text(errors="replace")
        if faststore.LOADING in text or "Ready" in text:
            worker.kill()
            return "recovery" if "Ready" not in text else "start (recovery was over)"
        await asyncio.sleep(0.01)
    raise TimeoutError("the worker never began to recover")


async def test_kill_9_at_five_points_loses_nothing_and_counts_nothing_twice(
    services: Services,
    prefix: str,
    worker_factory: WorkerFactory,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    rng = random.Random(20261201)
    lines = events_file(tmp_path / "events.jsonl")
    assert 45_000 <= len(lines) <= 60_000
    expected = [
        json.loads(line)
        for line in subprocess.run(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "replay",
                str(tmp_path / "events.jsonl"),
                "--rules",
                str(LIBRARY),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout.splitlines()
    ]
    kinds = {a["rule"] for a in expected}
    assert {"stockout", "silent-order-feed", "campaign-acos-high", "marketplace-gmv-drop"} <= kinds
    assert any(a["muted"] for a in expected), "Thanksgiving should mute an ads alert"

    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    worker: WorkerProcess = worker_factory(
        prefix,
        rules=LIBRARY,
        webhook=receiver.url,
        instance_id=f"{prefix}w",
        extra={"KPIWATCH_REDIS_URL": services.redis_url, "KPIWATCH_ROLLUP_IDLE_S": "900"},
    )
    worker.start()
    parts = segments(lines, len(KILLS) + 1)
    sent: list[bytes] = []
    kills: list[tuple[float, str]] = []
    await produce(services, prefix, parts[0], pace=1.0)
    sent += parts[0]
    await caught_up(worker, sent)
    for part, how in zip(parts[1:], KILLS, strict=True):
        seen = (
            len(
                await read_topic(
                    services.kafka_bootstrap, prefix + "alerts", until=bool, timeout=5.0
                )
            )
            if how == "after-alert"
            else 0
        )
        producing = asyncio.create_task(produce(services, prefix, part, pace=6.0))
        if how == "recovery":
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            worker.kill()
            kills.append((time.monotonic(), "mid-stream"))
            hit = await kill_in_recovery(worker)
        else:
            hit = await kill(worker, how, seen, services, prefix, rng)
        kills.append((time.monotonic(), hit))
        worker.start()
        await producing
        sent += part
        await caught_up(worker, sent)
    assert any(hit == "recovery" for _, hit in kills), kills

    # Every transition replay gives is on the alerts topic (a crash may repeat one there), and
    # each one a person should hear of reaches the webhook once.
    assert Counter(map(alert_identity, expected)).most_common(1)[0][1] == 1
    alerts, audible, repeats = await delivered(services, prefix, expected, receiver)
    for key in repeats:
        first = min(t for t, alert in receiver.got if alert["key"] == key)
        assert any(0 <= at - first <= UNNOTED for at, _ in kills), (key, kills)
    print(
        f"\n{len(kills)} kill -9s ({', '.join(hit for _, hit in kills)}); {len(lines):,} events; "
        f"{len(expected)} transitions on the alerts topic ({len(alerts)} records); "
        f"{len(audible)} delivered to the webhook, {len(repeats)} repeated"
    )
    worker.stop()
