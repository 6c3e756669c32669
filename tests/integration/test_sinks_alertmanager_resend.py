"""Alertmanager's client contract, against the real Debian prometheus-alertmanager with a short
`resolve_timeout`: an alert posted once (the old way) resolves by itself; ours, re-posted with
endsAt ahead, stays active well past resolve_timeout and past its own first endsAt, and
resolves when the resolve is sent."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from integration.support import free_port

from rules.alerts import Alert, fingerprint
from sinks.alertmanager import AlertmanagerSink
from sinks.config import AlertmanagerConfig

pytestmark = pytest.mark.integration

RESOLVE_TIMEOUT_S = 3
CONFIG = f"""\
global:
  resolve_timeout: {RESOLVE_TIMEOUT_S}s
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This test's own Alertmanager (its own config, port and data; stopped after)."""
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager is not installed (deploy/services.sh install)")
    folder = tmp_path_factory.mktemp("alertmanager")
    (folder / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    with (folder / "log").open("w") as log:
        process = subprocess.Popen(
            [
                binary, f"--config.file={folder / 'alertmanager.yml'}",
                f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder / "log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"alertmanager exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"alertmanager not ready:\n{log.read_text()}")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def alert(sku: str, status: str = "firing") -> Alert:
    labels = {"platform": "amazon", "marketplace": "JP", "store": "jp-1", "sku": sku}
    now = datetime.now(UTC)
    return Alert.model_validate(
        {
            "rule": "stockout", "severity": "critical", "status": status, "labels": labels,
            "value": Decimal(0), "threshold": "== 1", "window_start": None, "window_end": None,
            "at": now, "started_at": now - timedelta(seconds=1), "kpi": "stockout",
            "fingerprint": fingerprint("stockout", labels), "summary": f"stockout {sku}",
        }
    )  # fmt: skip


async def active(client: httpx.AsyncClient, url: str) -> set[str]:
    response = await client.get(f"{url}/api/v2/alerts", params={"filter": "alertname=stockout"})
    response.raise_for_status()
    return {a["labels"]["sku"] for a in response.json() if a["status"]["state"] == "active"}


async def test_re_posted_alerts_outlive_resolve_timeout_and_resolve_on_resolve(
    alertmanager: str, client: httpx.AsyncClient
) -> None:
    config = AlertmanagerConfig(
        name="am", type="alertmanager", url=alertmanager, resend_interval=1.0
    )
    sink = AlertmanagerSink(config, client)
    # The old way: posted once, no endsAt. Alertmanager ends it after resolve_timeout.
    once = {"labels": {"alertname": "stockout", "sku": "ONCE"}, "annotations": {}}
    (await client.post(f"{alertmanager}/api/v2/alerts", json=[once])).raise_for_status()
    try:
        await sink.send([alert("KEPT")])
        assert await active(client, alertmanager) == {"ONCE", "KEPT"}
        # Past resolve_timeout, and past the first post's endsAt (4 x 1 s).
        await asyncio.sleep(RESOLVE_TIMEOUT_S + 4)
        assert await active(client, alertmanager) == {"KEPT"}
        assert [a.labels["sku"] for a in sink.firing] == ["KEPT"]
        await sink.send([alert("KEPT", "resolved")])
        assert await active(client, alertmanager) == set()
        assert sink.firing == []
    finally:
        await sink.close()
