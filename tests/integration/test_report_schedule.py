"""A scheduled report fires once across two workers: both tick on the same Redis at the same
(test) clock, every second of a due minute and after; the robot gets one report per due time,
and a worker that died holding the lock is taken over once the lock expires."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from integration.support import Services, Webhook
from redis.asyncio import Redis

from connectors.simulator import simulate
from rules.load import RuleSet, load_library
from sinks import http
from sinks.load import load_setup_text
from streams.embedded import State, reader, replay
from streams.events import RawRecord, encode
from streams.reference import Reference
from streams.reports.schedule import Inputs, Scheduler

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.integration

SINKS = """\
sinks:
  - {name: ops-slack, type: slack, url: {env: SLACK_URL}}
  - {name: other, type: slack, url: {env: OTHER_URL}}
route:
  sinks: [other]
  routes:
    - match: {team: marketplace-ops}
      sinks: [ops-slack]
delivery: {attempts: 2, base_delay: 0.05}
schedules:
  - name: ops-minutely
    team: marketplace-ops
    period: day
    cron: "* * * * *"
    timezone: Asia/Shanghai
"""


@pytest.fixture(scope="module")
def inputs() -> Inputs:
    reference = Reference()
    reference.teams[("amazon", "US", "amazon-us-01")] = "marketplace-ops"
    reference.teams[("amazon", "JP", "amazon-jp-02")] = "marketplace-ops"
    start = datetime(2026, 11, 20, tzinfo=UTC)
    records = (
        RawRecord(source=f"sim:{n}", value=encode(e))
        for n, e in enumerate(simulate(start, hours=72, stores=2), 1)
    )
    state, alerts = State(), []
    replay(records, RuleSet([]), alerts.append, state=state, reference=reference)
    return Inputs(reader(state, reference), alerts, load_library().scorecards)


async def test_a_scheduled_report_fires_once_across_two_workers(
    services: Services, webhook: Webhook, inputs: Inputs
) -> None:
    setup = load_setup_text(
        SINKS, "sinks.yaml", {"SLACK_URL": webhook.url, "OTHER_URL": webhook.url + "/other"}
    )
    namespace = f"kpiwatch:t{uuid.uuid4().hex[:8]}."
    now = [datetime(2026, 11, 23, 1, 0, 0, tzinfo=UTC)]  # 09:00 in Shanghai
    days: list[date] = []

    async def source(day: date) -> Inputs:
        days.append(day)
        return inputs

    redis_a, redis_b = Redis.from_url(services.redis_url), Redis.from_url(services.redis_url)
    client = http.new_client()
    a, b = (
        Scheduler(setup, source, client, redis=r, namespace=namespace, clock=lambda: now[0])
        for r in (redis_a, redis_b)
    )
    try:
        assert a.targets(setup.schedules[0]) == ["ops-slack"]  # routed by the team label
        sent = []
        for second in range(0, 90, 3):  # the 01:00 minute, and half of the 01:01 one
            now[0] = datetime(2026, 11, 23, 1, 0, tzinfo=UTC) + timedelta(seconds=second)
            for found in await asyncio.gather(a.tick(), b.tick()):
                sent.extend(found)
        assert sent == [
            "ops-minutely@2026-11-23T09:00:00+08:00 -> ops-slack",
            "ops-minutely@2026-11-23T09:01:00+08:00 -> ops-slack",
        ]
        assert len(webhook.bodies) == 2
        assert days == [date(2026, 11, 22)] * 2  # yesterday, in Shanghai
        body = webhook.bodies[0]
        assert body["text"] == "marketplace-ops: day report, 2026-11-22"
        assert "GMV" in str(body["blocks"])
    finally:
        await client.aclose()
        await redis_a.aclose()
        await redis_b.aclose()


async def test_a_lock_left_by_a_dead_worker_is_taken_over_after_it_expires(
    services: Services, webhook: Webhook, inputs: Inputs
) -> None:
    setup = load_setup_text(
        SINKS, "sinks.yaml", {"SLACK_URL": webhook.url, "OTHER_URL": webhook.url}
    )
    namespace = f"kpiwatch:t{uuid.uuid4().hex[:8]}."
    due = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    redis = Redis.from_url(services.redis_url)
    client = http.new_client()

    async def source(day: date) -> Inputs:
        return inputs

    # The dead worker took the lock for 2 s and never sent.
    key = f"{namespace}report:ops-minutely:{due.isoformat()}:lock"
    await redis.set(key, "dead", nx=True, ex=2)
    clock = lambda: due.astimezone(UTC) + timedelta(seconds=5)  # noqa: E731
    survivor = Scheduler(setup, source, client, redis=redis, namespace=namespace, clock=clock)
    try:
        assert await survivor.tick() == []
        await asyncio.sleep(2.2)
        assert await survivor.tick() == [f"ops-minutely@{due.isoformat()} -> ops-slack"]
        assert await survivor.tick() == []
        assert len(webhook.bodies) == 1
    finally:
        await client.aclose()
        await redis.aclose()
