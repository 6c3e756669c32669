"""Scheduled reports in the Kafka runtime: two workers with one sinks file whose schedule falls
due every minute; each due minute reaches the robot once, built from the whole state read from
the changelogs (each worker holds only some partitions)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from integration.conftest import WorkerFactory
from integration.support import Services, Webhook
from redis import Redis

from connectors.kafka import EventProducer, ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, TOPICS, RawRecord, encode

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.integration

START = (datetime.now(UTC) - timedelta(hours=48)).replace(minute=0, second=0, microsecond=0)
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
TEAMS = (
    "platform,marketplace,store,team\n"
    "amazon,US,amazon-us-01,marketplace-ops\namazon,JP,amazon-jp-02,marketplace-ops\n"
)
SINKS = """\
sinks:
  - {name: ops-slack, type: slack, url: {env: TEST_SLACK_URL}}
  - {name: quiet, type: console}
route: {sinks: [quiet]}   # alerts elsewhere: the robot gets only the reports
schedules:
  - {name: ops, team: marketplace-ops, period: day, cron: "* * * * *", timezone: UTC,
     sinks: [ops-slack]}
"""


async def test_two_workers_send_each_due_report_once(
    services: Services, prefix: str, worker_factory: WorkerFactory, webhook: Webhook,
    tmp_path: Path,
) -> None:  # fmt: skip
    lines = [encode(event) for event in simulate(START, hours=48, stores=2)]
    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        await producer.send_records(RawRecord(source=str(n), value=v) for n, v in enumerate(lines))
    (tmp_path / "teams.csv").write_text(TEAMS, encoding="utf-8")
    (tmp_path / "sinks.yaml").write_text(SINKS, encoding="utf-8")
    extra = {
        "KPIWATCH_TEAMS_FILE": str(tmp_path / "teams.csv"),
        "KPIWATCH_SINKS_FILE": str(tmp_path / "sinks.yaml"),
        "KPIWATCH_REDIS_URL": services.redis_url,
        "TEST_SLACK_URL": webhook.url,
    }
    workers = [worker_factory(prefix, extra=extra) for _ in range(2)]
    for worker in workers:
        worker.spawn()
    for worker in workers:
        worker._wait_ready(120)
    deadline = time.monotonic() + 150
    while len(webhook.bodies) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(1)
    await asyncio.sleep(25)  # a tick of each worker after the second report
    redis = Redis.from_url(services.redis_url)
    try:
        marks = sorted(
            k.decode() for k in redis.scan_iter(f"kpiwatch:{prefix}report:ops:*:ops-slack")
        )
    finally:
        redis.close()
    assert len(marks) >= 2, webhook.bodies
    assert len(webhook.bodies) == len(marks), "one report per due minute, not one per worker"
    for body in webhook.bodies:
        assert body["text"] == f"marketplace-ops: day report, {YESTERDAY}"
        assert "GMV" in str(body["blocks"])
