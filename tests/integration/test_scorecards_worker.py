"""Team scorecards in the Kafka runtime: the worker's /scorecards page and gauges give what
`kpiwatch scorecard` gives on the same events, and a missing FX rate is counted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.support import Services

from connectors.kafka import EventProducer, ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, TOPICS, RawRecord, encode

pytestmark = pytest.mark.integration

# Ending now: the gauges show the periods that are running now.
START = (datetime.now(UTC) - timedelta(hours=48)).replace(minute=0, second=0, microsecond=0)
DAY = (START + timedelta(hours=24)).date().isoformat()
ROOT = Path(__file__).parents[2]
TEAMS = (
    "platform,marketplace,store,team\n"
    "amazon,US,amazon-us-01,marketplace-ops\n"
    "shopee,MY,shopee-my-03,marketplace-ops\n"
    "amazon,JP,amazon-jp-02,advertising\n"
)
FX = "date,currency,rate\n2026-11-01,JPY,0.0065\n"  # no MYR rate: counted as missing


def cli_scorecards(tmp_path: Path, period: str, day: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "scorecard",
            str(tmp_path / "events.jsonl"),
            "--rules",
            str(tmp_path / "rules"),
            "--teams",
            str(tmp_path / "teams.csv"),
            "--fx",
            str(tmp_path / "fx.csv"),
            "--period",
            period,
            "--day",
            day,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "no FX rate MYR" in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_worker_scorecards_equal_the_embedded_ones(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    lines = [encode(event) for event in simulate(START, hours=48)]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "rules").mkdir()
    cards = (ROOT / "rules" / "library" / "scorecards.yaml").read_text("utf-8")
    (tmp_path / "rules" / "scorecards.yaml").write_text(cards, encoding="utf-8")
    (tmp_path / "teams.csv").write_text(TEAMS, encoding="utf-8")
    (tmp_path / "fx.csv").write_text(FX, encoding="utf-8")
    expected = {p: cli_scorecards(tmp_path, p, DAY) for p in ("day", "week")}
    assert {row["team"] for row in expected["day"]} == {"advertising", "marketplace-ops"}
    assert all(row["score"] is not None for row in expected["day"])

    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        await producer.send_records(RawRecord(source=str(n), value=v) for n, v in enumerate(lines))
    extra = {
        "KPIWATCH_TEAMS_FILE": str(tmp_path / "teams.csv"),
        "KPIWATCH_FX_FILE": str(tmp_path / "fx.csv"),
    }
    worker = worker_factory(prefix, rules=tmp_path / "rules", extra=extra)
    worker.start()

    for period, rows in expected.items():
        found = await _eventually(lambda p=period: worker.scorecards(period=p, day=DAY), rows)
        assert found == rows
    body = httpx.get(f"{worker.url}/metrics", timeout=10).text
    assert 'kpiwatch_scorecard_score_ratio{period="day",team="advertising"}' in body
    assert 'kpiwatch_fx_rate_missing_total{currency="MYR"} 1.0' in body
    assert "no FX rate MYR -> USD" in worker.log.read_text("utf-8")


async def _eventually(read: Any, expected: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        value = read()
    return value
