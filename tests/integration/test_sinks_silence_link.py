"""A chat message's signed silence link against a real worker, Redis and Kafka: opening it only
asks (a chat app's link preview must not silence anything), its button silences that one alert
for 2 h in the shared silences, the action is logged, and an altered link is refused."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.sinks_support import Robot, alert, make_worker, produce, sinks_file, wait_for
from integration.support import Services

from sinks.load import load_setup_path
from sinks.notifier import links_of

pytestmark = pytest.mark.integration

KEY = "integration-link-key-0123456789"


async def test_a_silence_link_silences_one_alert_from_the_chat_message(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    robot: Robot,
    tmp_path: Path,
) -> None:
    route = "route:\n  sinks: [robot]\n  group_by: [store, sku]\n  group_wait: 0s\n"
    path = sinks_file(tmp_path, "", route + "  group_interval: 0s\n")
    worker = make_worker(worker_factory, services, prefix, robot, path, "w0")
    links = f"links:\n  silence: {{url: '{worker.url}', key: {{env: LINK_KEY}}, duration: 2h}}\n"
    path.write_text(path.read_text() + links)
    worker.env["LINK_KEY"] = KEY
    worker.start()

    linker = links_of(load_setup_path(path, {"ROBOT_URL": robot.url, "LINK_KEY": KEY}))
    assert linker is not None
    quiet, loud = alert("s1", "K1"), alert("s1", "K2")
    url = linker.action(quiet, "silence")
    assert url is not None
    async with httpx.AsyncClient(timeout=10) as client:
        asked = await client.get(url)
        assert asked.status_code == 200, asked.text
        assert "Silence stockout for 2 h?" in asked.text
        assert (await client.get(f"{worker.url}/silences")).json()["silences"] == []

        tampered = url.replace(quiet.fingerprint, loud.fingerprint)
        assert (await client.post(tampered, data={"by": "mallory"})).status_code == 403

        done = await client.post(url, data={"by": "lin"})
        assert done.status_code == 200, done.text
        assert "silenced until" in done.text
        (silence,) = (await client.get(f"{worker.url}/silences")).json()["silences"]
        assert silence["matchers"] == [
            {"name": "fingerprint", "value": quiet.fingerprint, "is_regex": False,
             "is_equal": True},
        ]  # fmt: skip
        assert silence["created_by"] == "lin"
        lasts = datetime.fromisoformat(silence["ends_at"]) - datetime.fromisoformat(
            silence["starts_at"]
        )
        assert lasts == timedelta(hours=2)
        # Pressing again makes no second silence.
        assert (await client.post(url, data={"by": "lin"})).status_code == 200
        assert len((await client.get(f"{worker.url}/silences")).json()["silences"]) == 1

    await asyncio.sleep(2.5)  # the worker re-reads silences every 2 s
    await produce(services.kafka_bootstrap, f"{prefix}alerts", [quiet, loud])
    await wait_for(lambda: len(robot.keys()) >= 1, 30, "the unsilenced alert never came")
    await asyncio.sleep(2)
    assert [a["labels"]["sku"] for a in robot.alerts()] == ["K2"]
    log = worker.log.read_text(errors="replace")
    assert f"silence link used: silence of alert {quiet.fingerprint} (rule stockout) by lin" in log
    assert "silence link refused" in log
