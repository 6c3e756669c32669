"""Hot reload in the real worker: a changed rule file takes effect without a restart, a broken
one is refused with a log line while the last good rules keep running."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from integration.conftest import WorkerFactory
from integration.support import Services, WorkerProcess, read_topic

from connectors.kafka import EventProducer, ensure_topics
from streams.events import EVENTS_TOPIC, TOPICS, InventoryEvent, OrderEvent

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 18, tzinfo=UTC)
RULE = """\
rules:
  - name: gmv-day
    kpi: gmv
    by: [store]
    window: 1d
    thresholds:
      warning: "> {threshold} USD"
"""


def order(store: str, minutes: int) -> OrderEvent:
    return OrderEvent.model_validate(
        {
            "event_id": f"{store}-{minutes}",
            "occurred_at": T0 + timedelta(minutes=minutes),
            "platform": "amazon",
            "marketplace": "US",
            "store_id": store,
            "order_id": f"{store}-{minutes}",
            "status": "placed",
            "lines": [
                {"sku": "A", "quantity": 1, "unit_price": {"amount": "100", "currency": "USD"}}
            ],
        }
    )


async def send(services: Services, prefix: str, *events: OrderEvent | InventoryEvent) -> None:
    names = [prefix + name for name in (EVENTS_TOPIC, *TOPICS.values(), "alerts", "dead-letter")]
    await ensure_topics(services.kafka_bootstrap, names, 4)
    async with EventProducer(services.kafka_bootstrap, prefix) as producer:
        for event in events:
            await producer.send(event)


def wait_for_log(worker: WorkerProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in worker.log.read_text(errors="replace"):
            return
        time.sleep(0.25)
    raise TimeoutError(f"no {text!r} in the worker log after {timeout}s:\n{worker.tail()}")


def wait_until_counted(worker: WorkerProcess, store: str, timeout: float = 60.0) -> None:
    deadline, seen = time.monotonic() + timeout, "nothing"
    while time.monotonic() < deadline:
        try:
            keys = list(worker.state()["stores"])
        except httpx.TransportError as exc:
            seen = repr(exc)  # the web server may come up just after "Ready"
        else:
            if any(store in key.split("/") for key in keys):
                return
            seen = f"{len(keys)} store(s)"
        time.sleep(0.5)
    raise TimeoutError(f"store {store} not counted after {timeout}s (last: {seen})")


def rewrite(path: Path, text: str) -> None:
    path.write_text(text, "utf-8")


async def test_rule_file_changes_take_effect_and_broken_ones_are_refused(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rewrite(rules, RULE.format(threshold="1,000,000"))
    worker = worker_factory(prefix, rules=rules)
    await send(services, prefix, order("s1", 0))  # topics exist before the worker subscribes
    worker.start()
    wait_until_counted(worker, "s1")  # judged by the old rules: 100 USD is no breach

    rewrite(rules, RULE.format(threshold=50))
    wait_for_log(worker, "rules reloaded: 1 rule(s)")
    await send(services, prefix, order("s2", 1))
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= 1
    )
    assert [(a["labels"]["store"], a["threshold"]) for a in alerts] == [("s2", "> 50 USD")]

    rewrite(rules, RULE.format(threshold=50).replace("kpi: gmv", "kpi: gmvv"))
    wait_for_log(worker, "rules reload refused, 1 rule(s) keep running")
    await send(services, prefix, order("s3", 2))
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= 2
    )
    assert sorted(a["labels"]["store"] for a in alerts) == ["s2", "s3"]
    assert worker.process is not None
    assert worker.process.poll() is None, "a broken rule file must not stop the worker"
    refused = [line for line in worker.log.read_text().splitlines() if "reload refused" in line]
    assert len(refused) == 1
    assert "unknown kpi 'gmvv'" in refused[0]


def stock(event_id: str, minutes: int, available: int) -> InventoryEvent:
    at = T0 + timedelta(minutes=minutes)
    return InventoryEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": at,
            "platform": "amazon",
            "marketplace": "US",
            "store_id": "s1",
            "sku": "A",
            "warehouse": "fba",
            "available": available,
            "as_of": at,
        }
    )


async def test_alert_state_survives_a_restart_and_the_resolve_still_arrives(
    services: Services, prefix: str, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: low-stock\n    kpi: available\n    by: [store, sku]\n"
        '    thresholds: {warning: "< 10"}\n    clear: ">= 20"\n',
        "utf-8",
    )
    await send(services, prefix, stock("i1", 0, 5))
    worker = worker_factory(prefix, rules=rules, instance_id=f"{prefix}w1")
    worker.start()
    await read_topic(services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= 1)
    worker.stop()

    worker.start()
    # Still low (no second firing), inside the hysteresis band (no resolve), then restocked.
    await send(services, prefix, stock("i2", 5, 4), stock("i3", 10, 15), stock("i4", 15, 100))
    alerts = await read_topic(
        services.kafka_bootstrap, prefix + "alerts", until=lambda got: len(got) >= 2
    )
    assert [(a["status"], a["value"], a["started_at"]) for a in alerts] == [
        ("firing", "5", T0.isoformat().replace("+00:00", "Z")),
        ("resolved", "100", T0.isoformat().replace("+00:00", "Z")),
    ]
