"""Amazon SP-API orders and FBA inventory against a fake in the models' shapes: paging, 429s,
token expiry mid-run, malformed pages, and a restart that neither loses nor doubles events."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr
from unit.connectors.fakes import FakeAmazon, Reply, Sleeps, _json, amazon_order

from connectors.amazon_sp import (
    AmazonInventorySource,
    AmazonOrdersSource,
    LwaTokens,
    SpApi,
    SpStore,
)
from connectors.api import Backoff
from connectors.base import SourceError, run_source
from connectors.checkpoint import MemoryCheckpoints
from rules.errors import InvalidEventError
from streams.events import Event, InventoryEvent, OrderEvent

STORE = SpStore(store_id="us-1", marketplace_id="ATVPDKIKX0DER", currency="USD")
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 21, tzinfo=UTC)
ClientFor = Callable[[Callable[..., Reply]], httpx.AsyncClient]


def make_api(client: httpx.AsyncClient, sleeps: Sleeps, endpoint: str = "https://sp.test") -> SpApi:
    tokens = LwaTokens(
        client,
        "amzn1.application-oa2-client.x",
        SecretStr("client-secret"),
        SecretStr("Atzr|refresh"),
        url=endpoint + "/auth/o2/token",
    )
    backoff = Backoff(base=1.0, cap=8.0, attempts=4, rng=random.Random(1))
    return SpApi(client, tokens, endpoint=endpoint, backoff=backoff, sleep=sleeps)


def orders_source(api: SpApi) -> AmazonOrdersSource:
    return AmazonOrdersSource(api, STORE, START, now=lambda: NOW)


class Collect:
    def __init__(self, fail_on_call: int | None = None) -> None:
        self.events: list[Event] = []
        self.calls = 0
        self.fail_on_call = fail_on_call

    async def __call__(self, events: Sequence[Event]) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("killed")
        self.events.extend(events)


async def test_pages_become_order_events_and_checkpoints(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAmazon([amazon_order(n) for n in range(1, 6)] + [amazon_order(6, "Shipped", "AFN")])
    sink, checkpoints = Collect(), MemoryCheckpoints()
    stats = await run_source(
        orders_source(make_api(client_for(fake.handle), sleeps)), sink, checkpoints
    )

    assert (stats.pages, stats.events, stats.rejected) == (3, 6, 0)
    assert len(checkpoints.saves) == 3
    first = sink.events[0]
    assert isinstance(first, OrderEvent)
    assert first.event_id == "amazon:902-0000000-0000001:2026-11-20T10:01:00Z"
    assert (first.marketplace, first.store_id, first.status) == ("US", "us-1", "placed")
    # ItemPrice 10.00 is for 3 units: 2 x 3.33 + 1 x 3.34, so GMV stays 10.00.
    assert [(line.quantity, line.unit_price.amount) for line in first.lines] == [
        (2, Decimal("3.33")),
        (1, Decimal("3.34")),
    ]
    last = sink.events[-1]
    assert isinstance(last, OrderEvent)
    assert (last.status, last.fulfillment_channel) == ("shipped", "marketplace")
    # The first request bounds the window; the next ones follow NextToken.
    orders_calls = [q for op, q in fake.calls if op == "getOrders"]
    assert orders_calls[0]["LastUpdatedAfter"] == "2026-11-01T00:00:00Z"
    assert orders_calls[0]["LastUpdatedBefore"] == "2026-11-20T23:57:50Z"
    assert orders_calls[1]["NextToken"] == "page-2"
    # The next pass starts where this one's window ended.
    assert json.loads(checkpoints.cursors["amazon_sp:orders:us-1"]) == {
        "after": "2026-11-20T23:57:50Z",
        "before": None,
        "next_token": None,
    }


async def test_pending_orders_wait_for_their_prices(client_for: ClientFor, sleeps: Sleeps) -> None:
    fake = FakeAmazon([amazon_order(1, "Pending"), amazon_order(2)])
    sink = Collect()
    await run_source(
        orders_source(make_api(client_for(fake.handle), sleeps)), sink, MemoryCheckpoints()
    )
    assert [e.event_id for e in sink.events] == ["amazon:902-0000000-0000002:2026-11-20T10:02:00Z"]


async def test_429_with_and_without_retry_after(client_for: ClientFor, sleeps: Sleeps) -> None:
    quota = {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota"}]}
    fake = FakeAmazon(
        [amazon_order(n) for n in range(1, 4)],
        script={("getOrders", 2): [_json(429, quota, {"Retry-After": "7"}), _json(429, quota)]},
    )
    sink = Collect()
    api = make_api(client_for(fake.handle), sleeps)
    await run_source(orders_source(api), sink, MemoryCheckpoints())

    assert len(sink.events) == 3
    waits = api.throttles["getOrders"].waits
    assert waits[0] == 7.0  # as asked
    assert 0 <= waits[1] <= 2.0  # jittered, base * 2**1


async def test_gives_up_after_bounded_attempts(client_for: ClientFor, sleeps: Sleeps) -> None:
    fake = FakeAmazon([amazon_order(1)], script={("getOrders", 1): [_json(503, {})] * 10})
    with pytest.raises(SourceError, match="getOrders: still failing after 4 attempts"):
        await run_source(
            orders_source(make_api(client_for(fake.handle), sleeps)), Collect(), MemoryCheckpoints()
        )


async def test_expired_token_mid_run_is_refreshed(client_for: ClientFor, sleeps: Sleeps) -> None:
    fake = FakeAmazon([amazon_order(n) for n in range(1, 6)], token_calls=3)
    api = make_api(client_for(fake.handle), sleeps)
    sink = Collect()
    await run_source(orders_source(api), sink, MemoryCheckpoints())
    assert len(sink.events) == 5
    assert api.tokens.refreshes >= 2


async def test_bad_refresh_token_is_a_clear_error_without_secrets(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAmazon([amazon_order(1)])
    api = make_api(client_for(fake.handle), sleeps)
    api.tokens._form = ("id", SecretStr("client-secret"), SecretStr("Atzr|wrong"))
    with pytest.raises(SourceError) as caught:
        await run_source(orders_source(api), Collect(), MemoryCheckpoints())
    assert "invalid_grant" in str(caught.value)
    assert "Atzr|wrong" not in str(caught.value)
    assert "client-secret" not in str(caught.value)


async def test_malformed_page_names_the_page_and_keeps_earlier_events(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    broken: Reply = (200, {"content-type": "application/json"}, b"<html>oops")
    fake = FakeAmazon([amazon_order(n) for n in range(1, 6)], script={("getOrders", 2): [broken]})
    sink, checkpoints = Collect(), MemoryCheckpoints()
    api = make_api(client_for(fake.handle), sleeps)
    with pytest.raises(SourceError, match="getOrders: HTTP 200, body is not JSON"):
        await run_source(orders_source(api), sink, checkpoints)
    assert len(sink.events) == 2
    assert len(checkpoints.saves) == 1
    # Next poll: the page is served properly and the run resumes from page 2.
    await run_source(orders_source(api), sink, checkpoints)
    assert len({e.event_id for e in sink.events}) == len(sink.events) == 5


async def test_malformed_order_is_rejected_with_its_position(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    orders = [amazon_order(n) for n in range(1, 5)]
    orders[2]["OrderStatus"] = "Teleported"
    orders[3]["LastUpdateDate"] = "yesterday"
    fake = FakeAmazon(orders)
    rejected: list[InvalidEventError] = []

    async def reject(error: InvalidEventError) -> None:
        rejected.append(error)

    sink = Collect()
    api = make_api(client_for(fake.handle), sleeps)
    await run_source(orders_source(api), sink, MemoryCheckpoints(), on_rejected=reject)
    assert len(sink.events) == 2
    assert [str(e) for e in rejected] == [
        "amazon_sp:orders:us-1 getOrders page 2 (after 2026-11-01T00:00:00Z) order 0 "
        "(902-0000000-0000003): unknown OrderStatus 'Teleported'",
        "amazon_sp:orders:us-1 getOrders page 2 (after 2026-11-01T00:00:00Z) order 1 "
        "(902-0000000-0000004): occurred_at: Input should be a valid datetime or date, "
        "input is too short",
    ]


async def test_restart_mid_paging_gives_each_event_once(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAmazon([amazon_order(n) for n in range(1, 8)])
    checkpoints = MemoryCheckpoints()
    killed = Collect(fail_on_call=3)
    with pytest.raises(RuntimeError, match="killed"):
        await run_source(
            orders_source(make_api(client_for(fake.handle), sleeps)), killed, checkpoints
        )
    # A new process: new client, new tokens, same checkpoint store.
    resumed = Collect()
    await run_source(orders_source(make_api(client_for(fake.handle), sleeps)), resumed, checkpoints)

    produced = [e.event_id for e in killed.events + resumed.events]
    expected = {f"amazon:{o['AmazonOrderId']}:{o['LastUpdateDate']}" for o in fake.orders}
    assert sorted(produced) == sorted(expected)


async def test_crash_between_hand_off_and_checkpoint_replays_same_ids(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    class FailSecondSave(MemoryCheckpoints):
        failed = False

        async def save(self, source: str, cursor: str) -> None:
            if len(self.saves) == 1 and not self.failed:
                self.failed = True
                raise RuntimeError("killed before the checkpoint")
            await super().save(source, cursor)

    fake = FakeAmazon([amazon_order(n) for n in range(1, 6)])
    checkpoints, sink = FailSecondSave(), Collect()
    with pytest.raises(RuntimeError, match="killed before the checkpoint"):
        await run_source(
            orders_source(make_api(client_for(fake.handle), sleeps)), sink, checkpoints
        )
    await run_source(orders_source(make_api(client_for(fake.handle), sleeps)), sink, checkpoints)
    # Page 2 was handed off twice; its events carry the same ids, so the engine counts them once.
    ids = [e.event_id for e in sink.events]
    assert len(ids) == 7
    assert len(set(ids)) == 5


def inventory_summary(
    sku: str, available: int, updated: str = "2026-11-20T08:00:00Z"
) -> dict[str, Any]:
    return {
        "asin": "B00T9QONN6",
        "fnSku": "X0001",
        "sellerSku": sku,
        "condition": "NewItem",
        "inventoryDetails": {
            "fulfillableQuantity": available,
            "inboundWorkingQuantity": 21,
            "inboundShippedQuantity": 4,
            "inboundReceivingQuantity": 0,
            "reservedQuantity": {"totalReservedQuantity": 2},
        },
        "lastUpdatedTime": updated,
        "productName": "Example",
        "totalQuantity": available + 27,
    }


async def test_inventory_summaries_with_start_date_and_next_token(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeAmazon(
        [],
        inventory=[
            inventory_summary("A", 66),
            inventory_summary("B", 0, ""),
            inventory_summary("C", 5),
        ],
    )
    api = make_api(client_for(fake.handle), sleeps)
    source = AmazonInventorySource(
        api, STORE, START, full_every=None, full_on_start=False, now=lambda: NOW
    )
    sink = Collect()
    await run_source(source, sink, MemoryCheckpoints())

    assert [type(e) for e in sink.events] == [InventoryEvent] * 3
    a = sink.events[0]
    assert isinstance(a, InventoryEvent)
    assert (a.sku, a.warehouse, a.available, a.inbound, a.reserved) == ("A", "fba", 66, 25, 2)
    # No lastUpdatedTime: the pass's upper bound stands in, so a replay gives the same id.
    assert sink.events[1].event_id == "amazon:inv:ATVPDKIKX0DER:B:2026-11-21T00:00:00Z"
    calls = [q for op, q in fake.calls if op == "getInventorySummaries"]
    assert calls[1]["startDateTime"] == "2026-11-01T00:00:00Z"
    assert calls[1]["nextToken"] == "page-2"
    assert calls[0]["granularityType"] == "Marketplace"
    assert calls[0]["details"] == "true"


async def test_end_to_end_over_a_real_http_server(sleeps: Sleeps) -> None:
    """Paging, a 429 and a token expiry over real sockets (aiohttp on 127.0.0.1)."""
    fake = FakeAmazon(
        [amazon_order(n) for n in range(1, 8)],
        token_calls=4,
        script={("getOrders", 3): [_json(429, {"errors": [{"code": "QuotaExceeded"}]})]},
    )

    async def handler(request: web.Request) -> web.Response:
        status, headers, body = fake.handle(
            request.method, request.path, dict(request.query), request.headers, await request.read()
        )
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
            api = make_api(client, sleeps, endpoint=f"http://127.0.0.1:{port}")
            sink, checkpoints = Collect(), MemoryCheckpoints()
            stats = await run_source(orders_source(api), sink, checkpoints)
    finally:
        await runner.cleanup()
    assert (stats.pages, stats.events) == (4, 7)
    assert len({e.event_id for e in sink.events}) == 7
    assert api.tokens.refreshes >= 2
