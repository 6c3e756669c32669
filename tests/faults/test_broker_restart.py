"""Guarantee 3, broker restart: Kafka stopped for 30 s mid-stream and started again on the same
data. The worker (mid-backlog when the broker goes) and a `kpiwatch connect` receiving Shopify
webhooks reconnect by themselves; nothing is lost or counted twice (the worker's /kpis equal the
offline recomputation over every event sent, each webhook order is on the events topic); and both
processes' metrics show the outage (`kpiwatch_kafka_up` 0 during it, unreachable seconds after).

The broker is one of the test's own (tests/faults/conftest.py: own_services), so the rest of the
session's broker is never stopped. A webhook the receiver could not hand off during the outage
is answered with an error and posted again, as Shopify retries a webhook until it gets a 2xx."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults.conftest import OwnServices
from faults.test_worker_crash import LIBRARY, caught_up, produce, segments
from integration.support import Services, ShopifyReceiver, WorkerFactory, read_topic
from unit.connectors.test_shopify import order

from connectors.kafka import ensure_topics
from connectors.simulator import simulate
from streams.events import EVENTS_TOPIC, TOPICS, encode

pytestmark = [pytest.mark.integration, pytest.mark.faults]

START = datetime(2026, 11, 14, tzinfo=UTC)
OUTAGE_S = 30.0
SECRET = "broker-restart-shopify-secret"
SHOP = "restart.myshopify.com"


def webhook_order(number: int) -> dict[str, Any]:
    """A Shopify orders/create body (Shopify's webhook example, tests/unit/connectors), inside
    the simulated period so it counts in the same windows."""
    created = (START + timedelta(hours=60, minutes=number)).isoformat()
    return order(
        id=9_000_000 + number,
        name=f"#R{number}",
        created_at=created,
        updated_at=created,
        line_items=[
            {"id": 1, "variant_id": 11, "sku": f"R-{number % 3}", "quantity": 1, "price": "19.90"}
        ],
    )


async def post(client: httpx.AsyncClient, receiver: ShopifyReceiver, number: int) -> int:
    """One signed webhook delivery; the HTTP status (0: no connection)."""
    body = json.dumps(webhook_order(number)).encode()
    response = await receiver.post(client, body, f"restart-{number}")
    return 0 if response is None else response.status_code


async def deliver(
    client: httpx.AsyncClient, receiver: ShopifyReceiver, number: int, timeout: float
) -> list[int]:
    """Post until a 2xx, as Shopify does; every status seen."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(await post(client, receiver, number))
        if 200 <= seen[-1] < 300:
            return seen
        await asyncio.sleep(1.0)
    raise AssertionError(f"webhook {number} never accepted: {seen}")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


async def metrics_of(client: httpx.AsyncClient, url: str) -> str:
    return (await client.get(url, timeout=5.0)).text


def webhook_lines(records: list[dict[str, Any]]) -> list[bytes]:
    """The webhook orders as read back from the events topic, as event lines."""
    return [
        json.dumps({k: v for k, v in r.items() if not k.startswith("_")}).encode()
        for r in records
        if r.get("store_id") == "shopify-restart"
    ]


async def test_kafka_stopped_30s_mid_stream_loses_nothing_and_shows_in_metrics(
    own_services: OwnServices,
    services: Services,
    prefix: str,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    own_services.start("kafka")
    bootstrap = own_services.services.kafka_bootstrap
    kafka = Services(bootstrap, services.redis_url)
    names = [prefix + n for n in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(bootstrap, names, 4)

    events = simulate(START, hours=120, stores=8, skus=5, seed=3, incident_rate=0.3)
    lines = [encode(event) for event in events]
    first, backlog, last = segments(lines, 3)

    worker = worker_factory(
        prefix,
        rules=LIBRARY,
        extra={"KPIWATCH_KAFKA_BOOTSTRAP": bootstrap, "KPIWATCH_ROLLUP_IDLE_S": "900"},
    )
    worker.start()
    connect = ShopifyReceiver.start(
        kafka, prefix, tmp_path, store_id="shopify-restart", shop=SHOP, secret=SECRET
    )
    connect_metrics = f"http://{connect.metrics}/metrics"
    worker_metrics = f"{worker.url}/metrics"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            await produce(kafka, prefix, first, pace=1.0)
            for number in range(3):
                await deliver(client, connect, number, timeout=60)

            # A backlog the worker is still reading when the broker goes.
            await produce(kafka, prefix, backlog, pace=0.5)
            own_services.stop("kafka")
            stopped = time.monotonic()
            during: list[int] = []
            down_seen = {"worker": False, "connect": False}
            number = 3
            while time.monotonic() - stopped < OUTAGE_S:
                during.append(await post(client, connect, number))
                for name, url in (("worker", worker_metrics), ("connect", connect_metrics)):
                    if metric(await metrics_of(client, url), "kpiwatch_kafka_up") == 0:
                        down_seen[name] = True
                assert worker.process is not None, "the worker went away"
                assert worker.process.poll() is None, worker.tail()
                assert connect.process.poll() is None, connect.log.read_text()
                await asyncio.sleep(2.0)
            assert down_seen == {"worker": True, "connect": True}
            assert not any(200 <= status < 300 for status in during), during

            own_services.start("kafka", keep_data=True)
            retried = await deliver(client, connect, number, timeout=120)
            for number in range(4, 6):
                await deliver(client, connect, number, timeout=60)
            await produce(kafka, prefix, last, pace=1.0)

            records = await read_topic(
                bootstrap,
                prefix + EVENTS_TOPIC,
                until=lambda got: len(webhook_lines(got)) >= 6,
                timeout=120,
            )
            hooks = webhook_lines(records)
            ids = sorted(json.loads(line)["order_id"] for line in hooks)
            assert sorted(set(ids)) == sorted(f"{9_000_000 + n}" for n in range(6)), ids
            # What the worker read is what the topic holds: a repeat there (a hand-off that
            # timed out yet landed) is for the engine's event ids to drop, offline too.
            await caught_up(worker, lines + hooks, timeout=240)

            for name, url in (("worker", worker_metrics), ("connect", connect_metrics)):
                text = await metrics_of(client, url)
                assert metric(text, "kpiwatch_kafka_up") == 1, name
                assert metric(text, "kpiwatch_kafka_unreachable_seconds_total") >= 10, name
        assert worker.starts == 1, "the worker was restarted"
        print(
            f"\noutage {OUTAGE_S:.0f} s: webhook answers during it {sorted(set(during))}, "
            f"then {retried}; {len(lines)} simulated events + {len(hooks)} webhook order "
            f"messages ({len(set(ids))} orders; copies per order {dict(Counter(ids))}: an "
            "attempt answered 503 may still land once the broker is back) "
            "counted once"
        )
    finally:
        connect.stop()
        worker.stop()
