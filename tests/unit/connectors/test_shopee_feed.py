"""Shopee against the bug classes of issue 13: a stale page cursor must not stop the orders
feed, one order Shopee will not give must not block the orders after it, orders count on the
day they were created, and config mistakes are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from unit.connectors.fakes import Reply, Sleeps, _json
from unit.connectors.test_shopee import (
    NOW,
    Collect,
    FakeShopee,
    make_source,
    shopee_order,
    stamp,
)

from connectors.base import SourceError, run_source
from connectors.checkpoint import MemoryCheckpoints
from connectors.shopee import ShopeeConfig, ShopeeShop, order_event
from rules.errors import InvalidEventError
from rules.load import RuleSet
from streams.embedded import Engine, reader
from streams.query import kpi_rows
from streams.windows import marketplace_zone

ClientFor = Callable[[Callable[..., Reply]], httpx.AsyncClient]
DETAIL = "/api/v2/order/get_order_detail"


def refusing(fake: FakeShopee, bad: set[str], code: str = "error_param") -> Callable[..., Reply]:
    """The fake, except that get_order_detail refuses any list holding one of `bad`."""

    def handle(method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> Reply:
        if path == DETAIL and bad & set(query["order_sn_list"].split(",")):
            return _json(400, {"error": code, "message": "order_sn is invalid", "request_id": "r"})
        return fake.handle(method, path, query, headers, body)

    return handle


async def test_one_refused_order_is_dead_lettered_and_the_feed_goes_on(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    orders = [shopee_order(f"C{n}", stamp(2 - n * 0.1)) for n in range(4)]
    fake = FakeShopee(orders)
    source = make_source(client_for(refusing(fake, {"C1"})), sleeps, [])
    sink, checkpoints, rejected = Collect(), MemoryCheckpoints(), []

    async def reject(error: InvalidEventError) -> None:
        rejected.append(error)

    # Before: the 400 failed every pass at this page and the cursor never moved.
    await run_source(source, sink, checkpoints, on_rejected=reject)
    assert sorted(e.order_id for e in sink.events) == ["C0", "C2", "C3"]  # type: ignore[attr-defined]
    [refused] = rejected
    assert refused.source.endswith("order C1")
    assert "order_sn is invalid" in refused.reason
    assert json.loads(checkpoints.cursors[source.name])["time_from"] == int(NOW.timestamp())


async def test_a_shop_level_refusal_still_fails_the_pass(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    orders = [shopee_order(f"D{n}", stamp(2 - n * 0.1)) for n in range(2)]
    fake = FakeShopee(orders)
    source = make_source(client_for(refusing(fake, {"D0", "D1"})), sleeps, [])
    with pytest.raises(SourceError):
        await run_source(source, Collect(), MemoryCheckpoints())
    denied = make_source(client_for(refusing(fake, {"D0"}, "error_permission")), sleeps, [])
    with pytest.raises(SourceError):
        await run_source(denied, Collect(), MemoryCheckpoints())


async def test_a_stale_cursor_reads_the_window_again(client_for: ClientFor, sleeps: Sleeps) -> None:
    orders = [shopee_order(f"E{n}", stamp(2 - n * 0.1)) for n in range(5)]
    fake = FakeShopee(orders)
    source = make_source(client_for(fake.handle), sleeps, [])
    checkpoints = MemoryCheckpoints()
    low = int((NOW - timedelta(days=3)).timestamp())
    saved = {"time_from": low, "time_to": int(NOW.timestamp()), "cursor": "4"}
    await checkpoints.save(source.name, json.dumps(saved))
    fake.script = [_json(400, {"error": "error_param", "message": "cursor is invalid"})]
    sink = Collect()
    await run_source(source, sink, checkpoints)  # before: SourceError on every pass
    assert sorted(e.order_id for e in sink.events) == [o["order_sn"] for o in orders]  # type: ignore[attr-defined]


def test_an_order_counts_on_the_day_it_was_created() -> None:
    zone = marketplace_zone("shopee", "MY")
    created = int(datetime(2026, 11, 19, 23, 50, tzinfo=zone).timestamp())
    order = {**shopee_order("F1", created + 7200), "create_time": created}
    order["item_list"][0]["model_discounted_price"] = Decimal("45.9")  # as read_json gives it
    event = order_event(order, ShopeeShop(store_id="shopee-my-1", shop_id=558899), "t")
    engine = Engine(RuleSet([]))
    engine.process_events([event])
    rows = kpi_rows(
        reader(engine.state), "store", "1d", datetime(2026, 11, 19, 23, 55, tzinfo=zone)
    )
    assert [r["values"]["orders"] for r in rows] == ["1"]
    assert datetime.fromisoformat(rows[0]["window_start"]).astimezone(zone).day == 19


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "partner.shopeemobile.com"}, "host"),
        ({"callback_url": "hooks.example.com/shopee"}, "callback_url"),
        ({"partner_id": 0}, "partner_id"),
        (
            {"shops": [{"store_id": "a", "shop_id": 1}, {"store_id": "a", "shop_id": 2}]},
            "two shops have the same store_id",
        ),
    ],
)
def test_config_mistakes_are_refused(change: dict[str, Any], message: str) -> None:
    data = {
        "partner_id": 2001887,
        "shops": [{"store_id": "shopee-my-1", "shop_id": 558899, "region": "MY"}],
        "start": NOW.isoformat(),
        **change,
    }
    with pytest.raises(ValidationError) as caught:
        ShopeeConfig.model_validate(data)
    assert message in str(caught.value)
