"""The Kafka runtime end to end on the real broker: events in, KPI tables, alerts out on the
topic and at a webhook, bad input dead-lettered, and state recovered after a restart. Each result
is compared with the embedded runtime (`kpiwatch replay`) on the same events."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.support import Services, Webhook, WorkerProcess, alert_identity, read_topic

from connectors.kafka import EventProducer, ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, TOPICS, RawRecord, decode, encode

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, tzinfo=UTC)
BAD = [b"{broken json", b'{"type": "order", "event_id": "no-fields"}', b"\xff\xfe\x00"]


def write_events(path: Path, hours: int = 48) -> list[bytes]:
    lines = [encode(event) for event in simulate(START, hours=hours)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def replay(path: Path) -> list[dict[str, Any]]:
    """Run the embedded runtime exactly as a user would: the CLI, in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def embedded_tables(lines: list[bytes]) -> dict[str, Any]:
    """The embedded runtime's state as the worker's /state shows its own."""
    from rules.load import load_default
    from streams.embedded import State, reader
    from streams.embedded import replay as run

    state = State()
    run(
        (RawRecord(source=str(n), value=v) for n, v in enumerate(lines)),
        load_default(),
        lambda alert: None,
        state=state,
    )
    dumped: dict[str, Any] = json.loads(json.dumps(reader(state).dump()))
    return dumped


def hour_cut(lines: list[bytes]) -> int:
    """About the middle of `lines`, where the stream first reaches a new UTC hour: `pack` closes
    every group there, so two halves are grouped as the whole file is."""
    hours = [int(decode(line, "cut").occurred_at.timestamp()) // 3600 for line in lines]
    middle = len(lines) // 2
    return next(n for n in range(middle, len(lines)) if hours[n] > max(hours[:n]))


def cli_kpis(path: Path, by: str, window: str, day: str) -> list[dict[str, Any]]:
    """`kpiwatch kpis --day`, the embedded answer to the worker's /kpis?day= page (`--at`
    leaves out the file's later events, which a live worker has counted)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "kpis",
            str(path),
            "--by",
            by,
            "--window",
            window,
            "--day",
            day,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


async def produce(
    services: Services, prefix: str, lines: list[bytes], bad: list[bytes] | None = None
) -> None:
    """As `kpiwatch produce` does (events packed per store and hour), after the bad messages."""
    names = [prefix + name for name in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        for value in bad or ():
            await producer.send_raw(prefix + EVENTS_TOPIC, value, key=b"amazon-us-01")
        if bad:
            await producer.send_raw(prefix + "orders", b"", key=None)  # empty, on a legacy topic
        records = (RawRecord(source=str(n), value=line) for n, line in enumerate(lines))
        await producer.send_records(records)


async def test_events_to_alerts_tables_and_dead_letters(
    services: Services, prefix: str, worker_factory: WorkerFactory, webhook: Webhook, tmp_path: Path
) -> None:
    lines = write_events(tmp_path / "events.jsonl")
    expected = replay(tmp_path / "events.jsonl")
    assert {a["rule"] for a in expected} >= {"stockout", "acos-high-jp"}

    await produce(services, prefix, lines, bad=BAD)
    worker: WorkerProcess = worker_factory(prefix, webhook=webhook.url)
    worker.start()

    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= len(expected)
    )
    assert Counter(map(alert_identity, alerts)) == Counter(map(alert_identity, expected))

    dead = await read_topic(
        services.kafka_bootstrap, prefix + "dead-letter", until=lambda got: len(got) >= 4
    )
    reasons = sorted(record["reason"] for record in dead)
    assert len(dead) == 4
    assert any(r.startswith("not valid JSON") for r in reasons)
    assert any("occurred_at: Field required" in r for r in reasons)
    assert sorted(record["topic"] for record in dead) == [
        prefix + EVENTS_TOPIC,
        prefix + EVENTS_TOPIC,
        prefix + EVENTS_TOPIC,
        prefix + "orders",
    ]
    assert all(isinstance(record["offset"], int) for record in dead)
    undecodable = next(r for r in dead if r["value"] is None and r["value_base64"] == "//4A")
    assert undecodable["reason"].startswith("not valid JSON")

    tables = embedded_tables(lines)
    assert await _eventually(worker.state, tables) == tables
    day = "2026-11-21"
    for by, window in (("store,sku", "24h"), ("store", "7d"), ("marketplace", "1d")):
        found = worker.kpis(by, window, day, day=True)
        assert found == cli_kpis(tmp_path / "events.jsonl", by, window, day)
    await _wait_for(lambda: len(webhook.alerts()) >= len(expected))
    assert Counter(map(alert_identity, webhook.alerts())) == Counter(map(alert_identity, expected))


async def test_restart_recovers_tables_and_does_not_alert_twice(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    lines = write_events(tmp_path / "all.jsonl")
    half = hour_cut(lines)
    (tmp_path / "first.jsonl").write_bytes(b"\n".join(lines[:half]) + b"\n")
    first_alerts = replay(tmp_path / "first.jsonl")
    all_alerts = replay(tmp_path / "all.jsonl")
    assert 0 < len(first_alerts) < len(all_alerts)

    await produce(services, prefix, lines[:half])
    worker: WorkerProcess = worker_factory(prefix, instance_id=f"{prefix}w1")
    worker.start()
    await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= len(first_alerts)
    )
    before = embedded_tables(lines[:half])
    assert await _eventually(worker.state, before) == before
    worker.stop()

    worker.start()
    assert worker.state() == before, "tables must come back from their changelog"
    await produce(services, prefix, lines[half:])
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= len(all_alerts)
    )
    assert Counter(map(alert_identity, alerts)) == Counter(map(alert_identity, all_alerts))
    tables = embedded_tables(lines)
    assert await _eventually(worker.state, tables) == tables
    day = "2026-11-21"
    for by, window in (("store,sku", "24h"), ("store", "7d"), ("marketplace", "1d")):
        assert worker.kpis(by, window, day, day=True) == cli_kpis(
            tmp_path / "all.jsonl", by, window, day
        )


async def test_web_server_listens_on_loopback_only(
    services: Services, prefix: str, worker_factory: WorkerFactory
) -> None:
    worker: WorkerProcess = worker_factory(prefix)
    worker.start()
    listening = _listening_addresses(worker.web_port)
    assert listening == {"127.0.0.1"}, f"web server bound to {listening}"
    metrics = httpx.get(f"{worker.url}/metrics", timeout=10).text
    assert "kpiwatch_events_in_total" in metrics


def _listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on `port`, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add("::" if set(address) == {"0"} else address)
    return found


async def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)


async def _eventually(read: Callable[[], Any], expected: Any, timeout: float = 60.0) -> Any:
    """Poll `read` until it returns `expected` (the worker may still be catching up); return
    the last value read, so the caller's assert shows the difference if it never matched."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        value = read()
    return value


async def test_the_worker_gives_replays_alert_records_over_the_whole_rule_library(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    """Parity: two weeks of 12 stores (stockouts, ACoS spikes, silent feeds, sales cliffs, a
    mute calendar) through every file of rules/library/: thresholds, for/clear/repeat,
    baselines, no-data and cross-store rollups give the same records in both runtimes."""
    from faults.test_worker_crash import LIBRARY, events_file

    lines = events_file(tmp_path / "events.jsonl")
    command = ["replay", str(tmp_path / "events.jsonl"), "--rules", str(LIBRARY)]
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = {a["rule"] for a in expected}
    assert kinds >= {
        "stockout",  # a threshold on a current level
        "campaign-acos-high",  # for: and clear:
        "low-days-of-cover",  # repeat:, orders and stock together
        "gmv-drop-vs-usual",  # a baseline
        "silent-order-feed",  # no data, in business hours
        "marketplace-gmv-drop",  # a rollup across stores
    }, kinds
    assert any(a["muted"] for a in expected)  # Thanksgiving mutes the ads rules

    await produce(services, prefix, lines)
    worker: WorkerProcess = worker_factory(
        prefix, rules=LIBRARY, extra={"KPIWATCH_ROLLUP_IDLE_S": "900"}
    )
    worker.start()
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= len(expected)
    )
    fields = ("labels", "window_end", "muted", "started_at", "summary", "messages")

    def record(alert: dict[str, Any]) -> tuple[Any, ...]:
        return (*alert_identity(alert), *(json.dumps(alert[f], sort_keys=True) for f in fields))

    assert Counter(map(record, alerts)) == Counter(map(record, expected))
