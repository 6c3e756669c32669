"""Debian's real Prometheus scrapes a running worker's /metrics and answers queries on the
alert-state metric. (KPI gauges come from evaluated events: tests/integration/test_dashboard.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.sinks_support import alert, produce
from integration.support import REPO, Services, free_port, services_sh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus() -> Iterator[tuple[str, Path]]:
    """A private Prometheus on a free port; workers to scrape are file-discovered targets."""
    os.environ["KPIWATCH_PROMETHEUS_PORT"] = str(free_port())
    services_sh("start", "prometheus")
    try:
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in services_sh("env", "prometheus").splitlines()
        )
        yield env["KPIWATCH_PROMETHEUS_URL"], Path(env["KPIWATCH_PROMETHEUS_TARGETS"])
    finally:
        services_sh("stop", "prometheus")
        del os.environ["KPIWATCH_PROMETHEUS_PORT"]


async def query(url: str, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The first non-empty answer to an instant query."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            response = await client.get(f"{url}/api/v1/query", params={"query": promql})
            response.raise_for_status()
            result: list[dict[str, Any]] = response.json()["data"]["result"]
            if result or time.monotonic() > deadline:
                return result
            await asyncio.sleep(0.5)


async def test_prometheus_scrapes_alert_state(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    prometheus: tuple[str, Path],
) -> None:
    url, targets = prometheus
    worker = worker_factory(prefix)
    worker.start()
    target = targets / f"{prefix.strip('.')}.json"
    instance = f"127.0.0.1:{worker.web_port}"
    target.write_text(json.dumps([{"targets": [instance]}]))
    try:
        firing = [alert("s1", f"K{n}") for n in range(3)]
        await produce(
            services.kafka_bootstrap, f"{prefix}alerts", [*firing, alert("s1", "K0", "resolved", 5)]
        )
        selector = f'instance="{instance}",rule="stockout"'
        state = await query(url, f'kpiwatch_alerts_firing{{{selector},severity="critical"}} == 2')
        assert [float(r["value"][1]) for r in state] == [2.0]
        health = await query(url, f'up{{instance="{instance}"}}')
        assert [float(r["value"][1]) for r in health] == [1.0]
    finally:
        target.unlink()


def test_the_shipped_alerting_rules_are_valid(prometheus: tuple[str, Path]) -> None:
    rules = REPO / "deploy" / "prometheus" / "kpiwatch-rules.yml"
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = rules.read_text().count("- alert: ")
    assert f"SUCCESS: {alerts} rules found" in checked.stdout
