"""`kpiwatch connect amazon-sp --once` on Amazon's sandbox payloads, against the real Kafka and
Redis, twice (the second pass resumes from the cursors in Redis), and `kpiwatch kpis` on what
reached the events topic: a cancellation with QuantityOrdered 0 undoes its sale, an order first
seen Shipped counts on its purchase day, a multi-channel order is no marketplace sale, an order
whose items Amazon refuses is dead-lettered with its reason while the feed goes on, and stock
comes from a full inventory pass."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from integration.support import REPO, Services, read_topic
from integration.test_connect import Gate, serve_fake, start_connect, wait_exit
from unit.connectors.fakes import FakeAmazon
from unit.connectors.test_amazon_sp_payloads import (
    SANDBOX_ITEMS,
    cancelled_items,
    sandbox_order,
    summary,
)

from streams.events import EVENTS_TOPIC

pytestmark = pytest.mark.integration

# What this test judges; a connector may also report on its passes (feed events).
SALES_AND_STOCK = ("order", "inventory")


def write_config(path: Path, url: str, store_id: str) -> None:
    path.write_text(
        "amazon_sp:\n"
        "  client_id: amzn1.application-oa2-client.test\n"
        "  client_secret: {env: TEST_LWA_SECRET}\n"
        f"  endpoint: {url}\n"
        f"  token_url: {url}/auth/o2/token\n"
        "  start: 2026-11-01T00:00:00Z\n"
        "  stores:\n"
        f"    - store_id: {store_id}\n"
        "      marketplace_id: ATVPDKIKX0DER\n"
        "      refresh_token: {env: TEST_SP_REFRESH}\n"
    )


async def test_sandbox_orders_through_connect_and_kpis(
    services: Services, prefix: str, tmp_path: Path
) -> None:
    store = f"us-{uuid.uuid4().hex[:8]}"
    sale = sandbox_order(0, "2026-11-20T18:00:00Z", "2026-11-20T18:05:00Z")
    mcf = sandbox_order(
        1, "2026-11-20T18:10:00Z", "2026-11-20T18:15:00Z", SalesChannel="Non-Amazon"
    )
    refused = sandbox_order(
        0, "2026-11-20T19:00:00Z", "2026-11-20T19:05:00Z", AmazonOrderId="902-1845936-0000003"
    )
    fake = FakeAmazon(
        [sale, mcf, refused],
        page_size=2,
        inventory=[summary("NABetaASINB00551Q3CS", 12, 30, "2026-10-01T00:00:00Z")],
        items={o["AmazonOrderId"]: SANDBOX_ITEMS for o in (sale, mcf, refused)},
        refuse_items={refused["AmazonOrderId"]: 1000},
    )
    runner, url = await serve_fake(fake, Gate())
    config, log = tmp_path / "connect.yaml", tmp_path / "connect.log"
    write_config(config, url, store)
    try:
        assert await wait_exit(start_connect(config, services, prefix, log)) == 0, log.read_text()
        # The next pass: the sale is cancelled (QuantityOrdered 0, no prices) and an order
        # bought late on the 19th (Los Angeles) is first seen Shipped on the 21st.
        shipped = sandbox_order(
            0,
            "2026-11-20T07:30:00Z",
            "2026-11-21T18:00:00Z",
            AmazonOrderId="902-1845936-0000004",
            OrderStatus="Shipped",
        )
        cancelled = {**sale, "OrderStatus": "Canceled", "LastUpdateDate": "2026-11-21T09:00:00Z"}
        fake.orders = [cancelled, shipped]
        fake.items[sale["AmazonOrderId"]] = cancelled_items()
        fake.items[shipped["AmazonOrderId"]] = SANDBOX_ITEMS
        assert await wait_exit(start_connect(config, services, prefix, log)) == 0, log.read_text()
    finally:
        await runner.cleanup()

    records = await read_topic(
        services.kafka_bootstrap,
        prefix + EVENTS_TOPIC,
        until=lambda found: len([r for r in found if r["type"] in SALES_AND_STOCK]) >= 5,
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({k: v for k, v in r.items() if not k.startswith("_")}) + "\n"
            for r in records
        )
    )
    kinds = sorted(r["type"] for r in records if r["type"] in SALES_AND_STOCK)
    # Each pass is a full inventory pass (a process's first is): one snapshot each.
    assert kinds == ["inventory", "inventory", "order", "order", "order"]
    [dead] = await read_topic(
        services.kafka_bootstrap, prefix + "dead-letter", until=lambda found: len(found) >= 1
    )
    assert dead["reason"] == "getOrderItems refused 3 times: HTTP 400: InvalidInput: Invalid Input"
    assert refused["AmazonOrderId"] in dead["source"]

    # The full inventory pass dates its snapshot now: the orders' week ends on the 21st.
    week = kpis(events, "store", "7d", "--at", "2026-11-22T08:00:00+00:00")
    # The shipped order counts (on the 19th); the cancelled one is out; MCF and the refused
    # order never came in.
    assert (week["orders"], week["units"], week["gmv"]) == ("1", "1", "10.00")
    assert week["cancel_rate"] == "0.500000"
    [stock] = [row for row in kpis_rows(events, "store,sku", "1d") if row["values"]["available"]]
    assert (stock["values"]["available"], stock["values"]["inbound"]) == ("12", "30")


def kpis_rows(events: Path, by: str, window: str, *more: str) -> list[dict[str, object]]:
    """`kpiwatch kpis EVENTS --by BY --window WINDOW ...`, its rows."""
    command = ["kpis", str(events), "--by", by, "--window", window, *more]
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def kpis(events: Path, by: str, window: str, *more: str) -> dict[str, str | None]:
    [row] = kpis_rows(events, by, window, *more)
    values: dict[str, str | None] = row["values"]  # type: ignore[assignment]
    return values
