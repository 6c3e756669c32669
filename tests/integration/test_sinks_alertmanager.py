"""Our Alertmanager sink against Debian's real prometheus-alertmanager: alerts posted through its
v2 API are read back through the same API, a silence made there mutes one of them, and a
resolved alert leaves the active list."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from integration.support import free_port, services_sh

from rules.alerts import Alert, fingerprint
from sinks.alertmanager import AlertmanagerSink
from sinks.config import AlertmanagerConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[str]:
    """A private Alertmanager on a free port, with deploy/alertmanager/alertmanager.yml."""
    os.environ["KPIWATCH_ALERTMANAGER_PORT"] = str(free_port())
    services_sh("start", "alertmanager")
    try:
        yield services_sh("env", "alertmanager").strip().split("=", 1)[1]
    finally:
        services_sh("stop", "alertmanager")
        del os.environ["KPIWATCH_ALERTMANAGER_PORT"]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def alert(sku: str, status: str = "firing") -> Alert:
    labels = {"platform": "amazon", "marketplace": "JP", "store": "jp-1", "sku": sku}
    return Alert(
        rule="acos-high",
        severity="warning",
        status=status,  # type: ignore[arg-type]
        labels=labels,
        value=Decimal("0.62"),
        threshold="> 35%",
        window_start=None,
        window_end=None,
        at=datetime.now(UTC) - timedelta(seconds=5 if status == "firing" else 1),
        kpi="acos",
        fingerprint=fingerprint("acos-high", labels),
        summary=f"acos 62% on {sku}",
    )


async def read_back(client: httpx.AsyncClient, url: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"{url}/api/v2/alerts", params={"filter": "alertname=acos-high", **params}
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


async def test_alerts_and_a_silence_round_trip(
    alertmanager: str, client: httpx.AsyncClient
) -> None:
    sink = AlertmanagerSink(
        AlertmanagerConfig(name="am", type="alertmanager", url=alertmanager), client
    )
    await sink.send([alert("A"), alert("B")])
    alerts = {a["labels"]["sku"]: a for a in await read_back(client, alertmanager)}
    assert set(alerts) == {"A", "B"}
    assert alerts["A"]["labels"]["severity"] == "warning"
    assert alerts["A"]["labels"]["store"] == "jp-1"
    assert alerts["A"]["annotations"]["threshold"] == "> 35%"
    assert alerts["A"]["status"]["state"] == "active"

    now = datetime.now(UTC)
    silence = {
        "matchers": [{"name": "sku", "value": "A", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "kpiwatch-test",
        "comment": "restock on its way",
    }
    created = await client.post(f"{alertmanager}/api/v2/silences", json=silence)
    created.raise_for_status()
    silence_id = created.json()["silenceID"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alerts = {a["labels"]["sku"]: a for a in await read_back(client, alertmanager)}
        if alerts["A"]["status"]["state"] == "suppressed":
            break
        await asyncio.sleep(0.2)
    assert alerts["A"]["status"]["silencedBy"] == [silence_id]
    assert alerts["B"]["status"]["state"] == "active"
    unsilenced = await read_back(client, alertmanager, silenced="false")
    assert [a["labels"]["sku"] for a in unsilenced] == ["B"]


async def test_a_resolved_alert_leaves_the_active_list(
    alertmanager: str, client: httpx.AsyncClient
) -> None:
    sink = AlertmanagerSink(
        AlertmanagerConfig(name="am", type="alertmanager", url=alertmanager), client
    )
    await sink.send([alert("C")])
    assert "C" in {a["labels"]["sku"] for a in await read_back(client, alertmanager)}
    await sink.send([alert("C", "resolved")])
    assert "C" not in {a["labels"]["sku"] for a in await read_back(client, alertmanager)}
