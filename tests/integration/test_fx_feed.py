"""FX rates from the fx-rates topic: read before the worker starts, followed while it runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from integration.conftest import WorkerFactory
from integration.support import Services

from connectors.kafka import EventProducer, ensure_topics
from streams.events import EVENTS_TOPIC, TOPICS, OrderEvent

pytestmark = pytest.mark.integration


def produce_fx(services: Services, prefix: str, path: Path, text: str) -> None:
    path.write_text(text)
    env = {
        **os.environ,
        "KPIWATCH_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "KPIWATCH_TOPIC_PREFIX": prefix,
    }
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce-fx", str(path)],
        env=env,
        check=True,
        capture_output=True,
    )


def jp_order(event_id: str, day: int) -> OrderEvent:
    return OrderEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": datetime(2026, 11, day, 3, tzinfo=UTC),
            "platform": "amazon",
            "marketplace": "JP",
            "store_id": "jp-1",
            "order_id": event_id,
            "status": "placed",
            "lines": [
                {"sku": "A", "quantity": 1, "unit_price": {"amount": "10000", "currency": "JPY"}}
            ],
        }
    )


async def gmv_on(worker: Any, day: int, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        rows = worker.kpis("store", "1d", f"2026-11-{day:02d}T12:00:00+09:00")
        if (rows and rows[0]["values"]["orders"] == "1") or time.monotonic() > deadline:
            return rows[0]["values"]["gmv"] if rows else None
        await asyncio.sleep(0.5)


async def test_rates_published_before_and_while_the_worker_runs(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    produce_fx(
        services, prefix, tmp_path / "fx1.csv", "date,currency,rate\n2026-11-01,JPY,0.0067\n"
    )
    names = [prefix + name for name in (EVENTS_TOPIC, *TOPICS.values())]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    worker = worker_factory(prefix)
    worker.start()
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        await producer.send(jp_order("e1", 10))
    assert await gmv_on(worker, 10) == "67.00"

    produce_fx(
        services, prefix, tmp_path / "fx2.csv", "date,currency,rate\n2026-11-20,JPY,0.0070\n"
    )
    await asyncio.sleep(3)  # the worker follows the topic; give it a moment
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        await producer.send(jp_order("e2", 21))
    assert await gmv_on(worker, 21) == "70.00"
    assert await gmv_on(worker, 10) == "67.00"  # counted before: not restated
