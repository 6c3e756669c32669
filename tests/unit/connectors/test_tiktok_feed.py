"""TikTok Shop against the bug classes of issue 13: a stale page token must not stop the feed,
one bad product must not block the inventory feed, orders count on the day they were created,
free gifts are no sales, and config mistakes are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from unit.connectors.fakes import Reply, Sleeps
from unit.connectors.fakes_tiktok import FakeTikTok, envelope, line_item, tiktok_order
from unit.connectors.test_tiktok import (
    NOW,
    SHOP,
    Collect,
    ids,
    make_api,
    orders_source,
    sku,
    stamp,
)

from connectors.base import run_source
from connectors.checkpoint import MemoryCheckpoints
from connectors.tiktok import TikTokConfig, TikTokInventorySource, order_event
from rules.load import RuleSet
from streams.embedded import Engine, reader
from streams.events import InventoryEvent, OrderEvent
from streams.query import kpi_rows

ClientFor = Callable[[Callable[..., Reply]], httpx.AsyncClient]
SEARCH = "/order/202309/orders/search"


async def test_a_stale_page_token_reads_the_window_again(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    orders = [tiktok_order(n, stamp(2 - n * 0.1)) for n in range(5)]
    fake = FakeTikTok(orders, now=int(NOW.timestamp()))
    source = orders_source(make_api(client_for(fake.handle), sleeps))
    checkpoints = MemoryCheckpoints()
    # A cursor saved mid-window hours ago: TikTok no longer knows its page token.
    low = int((NOW - timedelta(days=3)).timestamp())
    saved = {"update_ge": low, "update_lt": low + 7 * 86400, "page_token": "offset-2"}
    await checkpoints.save(source.name, json.dumps(saved))
    fake.script[SEARCH] = [envelope(None, 36009003, "page_token is invalid", 400)]
    sink = Collect()
    await run_source(source, sink, checkpoints)  # before: SourceError on every pass, for ever
    assert ids(sink.events) == [o["id"] for o in orders]
    searches = [q for path, q, _ in fake.calls if path == SEARCH]
    assert searches[0]["page_token"] == "offset-2"
    assert "page_token" not in searches[1]


async def test_a_server_error_on_a_saved_token_still_fails_the_pass(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    from connectors.base import SourceError

    fake = FakeTikTok([], now=int(NOW.timestamp()))
    fake.script[SEARCH] = [envelope(None, 1, "internal error", 500)] * 6
    source = orders_source(make_api(client_for(fake.handle), sleeps))
    checkpoints = MemoryCheckpoints()
    low = int((NOW - timedelta(days=3)).timestamp())
    saved = {"update_ge": low, "update_lt": low + 7 * 86400, "page_token": "offset-2"}
    await checkpoints.save(source.name, json.dumps(saved))
    with pytest.raises(SourceError):
        await run_source(source, Collect(), checkpoints)
    assert json.loads(checkpoints.cursors[source.name])["page_token"] == "offset-2"


async def test_one_refused_product_is_dead_lettered_and_the_rest_read(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeTikTok([], now=int(NOW.timestamp()))
    fake.inventory = {"P1": [sku("S1", "SKU-A", ("W-1", 5, 1))]}

    def handle(method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> Reply:
        if path.endswith("/inventory/search") and "P2" in json.loads(body)["product_ids"]:
            fake.calls.append((path, query, json.loads(body)))
            return envelope(None, 12019020, "product P2 does not exist", 400)
        return fake.handle(method, path, query, headers, body)

    sink, checkpoints = Collect(), MemoryCheckpoints()
    source = TikTokInventorySource(make_api(client_for(handle), sleeps), now=lambda: NOW)
    await run_source(source, sink, checkpoints, on_rejected=sink.reject)
    stock = [(e.sku, e.available) for e in sink.events if isinstance(e, InventoryEvent)]
    assert stock == [("SKU-A", 5)]
    [refused] = sink.rejected
    assert "product P2" in refused.source
    assert "does not exist" in refused.reason
    assert json.loads(checkpoints.cursors[source.name])["batch"] == 1  # the feed moved on


async def test_a_shop_that_refuses_every_product_fails_the_pass(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    from connectors.base import SourceError

    fake = FakeTikTok([], now=int(NOW.timestamp()))
    fake.script["/product/202309/inventory/search"] = [
        envelope(None, 105005, "shop is not authorized", 403)
    ] * 3
    source = TikTokInventorySource(make_api(client_for(fake.handle), sleeps), now=lambda: NOW)
    with pytest.raises(SourceError):
        await run_source(source, Collect(), MemoryCheckpoints())


def test_an_order_counts_on_the_day_it_was_created() -> None:
    from streams.windows import marketplace_zone

    pacific = marketplace_zone("tiktok", "US")  # the store's own days
    # Created at 23:50 on the 19th (its time), first read after an update at 01:50 on the 20th.
    created = int(datetime(2026, 11, 19, 23, 50, tzinfo=pacific).timestamp())
    order = {**tiktok_order(1, created + 7200), "create_time": created}
    event = order_event(order, SHOP, "t")
    engine = Engine(RuleSet([]))
    engine.process_events([event])
    at = datetime(2026, 11, 19, 23, 55, tzinfo=pacific)
    rows = kpi_rows(reader(engine.state), "store", "1d", at)
    assert [r["values"]["orders"] for r in rows] == ["1"]
    assert datetime.fromisoformat(rows[0]["window_start"]).astimezone(pacific).day == 19


def test_free_gifts_are_no_sales() -> None:
    order = tiktok_order(1, stamp(1))
    order["line_items"].append(line_item(9, "GIFT-1", "0.00", is_gift=True))
    event = order_event(order, SHOP, "t")
    assert isinstance(event, OrderEvent)
    assert "GIFT-1" not in [line.sku for line in event.lines]
    assert sum(line.quantity for line in event.lines) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"api_host": "open-api.tiktokglobalshop.com"}, "api_host"),
        ({"auth_host": "https://auth.tiktok-shops.com/api"}, "auth_host"),
        ({"shops": [SHOP.model_dump(), SHOP.model_dump()]}, "store_id listed more than once"),
    ],
)
def test_config_mistakes_are_refused(change: dict[str, Any], message: str) -> None:
    data = {"app_key": "k", "shops": [SHOP.model_dump()], "start": NOW.isoformat(), **change}
    with pytest.raises(ValidationError) as caught:
        TikTokConfig.model_validate(data)
    assert message in str(caught.value)
