"""Silences and acknowledgements in a real Redis: the store, the `kpiwatch silence` command
line, and a worker's /silences API that every alert it delivers honours."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
from integration.support import REPO, Services
from redis.asyncio import Redis

from sinks.route import route_labels
from sinks.silence import SilenceStore, new_silence

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(services: Services) -> AsyncIterator[SilenceStore]:
    redis = Redis.from_url(services.redis_url)
    try:
        yield SilenceStore(redis, f"kpiwatch:t{uuid.uuid4().hex[:8]}.", refresh=0)
    finally:
        await redis.aclose()


async def test_store_add_list_expire_and_acknowledge(store: SilenceStore) -> None:
    now = datetime.now(UTC)
    silence = await store.add(new_silence(["store=s1", "sku=~K.*"], 3600, "lin", "stocktake"))
    later = await store.add(new_silence(["store=s2"], 60, "lin", now=now + timedelta(hours=1)))
    assert [s.id for s in await store.silences()] == [silence.id, later.id]
    firing = alert("s1", "K1")
    assert await store.muted(firing, route_labels(firing))
    other = alert("s2", "K1")
    assert not await store.muted(other, route_labels(other))  # its silence starts later

    assert await store.expire(silence.id) is not None
    assert await store.expire(silence.id) is None
    assert not await store.muted(firing, route_labels(firing))
    assert [s.id for s in await store.silences(expired=True)] == [silence.id, later.id]

    await store.acknowledge(other.fingerprint, "lin")
    assert await store.muted(other, route_labels(other))
    resolved = alert("s2", "K1", "resolved", 5)
    assert not await store.muted(resolved, route_labels(resolved))
    assert not await store.acknowledged(other.fingerprint)


def cli(services: Services, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sinks.silence", "--redis-url", services.redis_url,
         "--namespace", namespace, *args],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=60,
    )  # fmt: skip


def test_command_line_add_list_expire(services: Services) -> None:
    namespace = f"kpiwatch:t{uuid.uuid4().hex[:8]}."
    added = cli(services, namespace, "add", "store=s1", "--duration", "30m", "--comment", "x")
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.strip()
    listed = cli(services, namespace, "list")
    assert listed.stdout.startswith(f"{silence_id}  store=s1  until ")
    assert cli(services, namespace, "expire", silence_id).returncode == 0
    assert cli(services, namespace, "list").stdout == ""
    missing = cli(services, namespace, "expire", silence_id)
    assert (missing.returncode, missing.stderr) == (1, f"error: no silence {silence_id} in force\n")
    bad = cli(services, namespace, "add", "store")
    assert bad.returncode == 2
    assert "is not a matcher" in bad.stderr


async def test_worker_api_silences_and_acks_hold_alerts_back(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    robot: Robot,
    tmp_path: Path,
) -> None:
    route = "route:\n  sinks: [robot]\n  group_by: [store]\n  group_wait: 0s\n"
    route += "  group_interval: 0s\n"
    worker = make_worker(
        worker_factory, services, prefix, robot, sinks_file(tmp_path, "", route), "w0"
    )
    worker.start()
    async with httpx.AsyncClient(base_url=worker.url, timeout=10) as api:
        body = {
            "matchers": [{"name": "store", "value": "s1"}],
            "duration": "1h",
            "created_by": "sre",
        }
        created = await api.post("/silences", json=body)
        assert created.status_code == 201, created.text
        silence_id = created.json()["id"]
        assert [s["id"] for s in (await api.get("/silences")).json()["silences"]] == [silence_id]
        bad = await api.post("/silences", json={"matchers": [], "duration": "1h"})
        assert bad.status_code == 400

        # The worker's silence cache refreshes every 2 s.
        await asyncio.sleep(2.5)
        topic = f"{prefix}alerts"
        await produce(services.kafka_bootstrap, topic, [alert("s1", "K1"), alert("s2", "K1")])
        await wait_for(lambda: len(robot.keys()) >= 1, 30, "the unsilenced alert never came")
        await asyncio.sleep(2)
        assert [a["labels"]["store"] for a in robot.alerts()] == ["s2"]

        # Acknowledged: its repeat is held back, its resolve goes out.
        ack = cli(services, f"kpiwatch:{prefix}", "ack", alert("s2", "K1").fingerprint)
        assert ack.returncode == 0, ack.stderr
        assert (await api.delete("/silences", params={"id": silence_id})).status_code == 200
        await asyncio.sleep(2.5)
        later = [alert("s2", "K1", minute=2), alert("s2", "K1", "resolved", 5)]
        await produce(services.kafka_bootstrap, topic, [*later, alert("s1", "K2")])
        await wait_for(lambda: len(robot.keys()) >= 3, 30, "resolve and unsilenced alert")
        await asyncio.sleep(2)
    sent = [(a["labels"]["store"], a["labels"]["sku"], a["status"]) for a in robot.alerts()]
    assert sorted(sent) == [
        ("s1", "K2", "firing"),
        ("s2", "K1", "firing"),
        ("s2", "K1", "resolved"),
    ]
