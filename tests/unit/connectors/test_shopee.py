"""Shopee Open Platform v2: signatures against independently computed vectors, and orders in
15-day windows with cursor paging, token refresh and rotation, 429s and a malformed order."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from unit.connectors.fakes import Recorder, Reply, Sleeps, _json
from unit.connectors.fakes_shopee import FakeShopee as FakeShopeeShop
from unit.connectors.fakes_shopee import error, model, plain_item, stock_info

from connectors.api import Backoff, Throttle, install_redaction
from connectors.base import SourceError, run_source
from connectors.checkpoint import MemoryCheckpoints
from connectors.shopee import (
    PUSH_TIMEOUT,
    ShopeeApi,
    ShopeeConfig,
    ShopeeOrdersSource,
    ShopeePush,
    ShopeeShop,
    ShopeeStockSource,
    order_event,
    serve_push,
    sign,
    stock_events,
    verify_push,
)
from rules.errors import InvalidEventError
from streams.events import Event, InventoryEvent, OrderEvent

KEY = SecretStr("partner-key-123")
NOW = datetime(2026, 11, 21, tzinfo=UTC)
ClientFor = Callable[[Callable[..., Reply]], httpx.AsyncClient]


def test_shop_signature_matches_openssl() -> None:
    # printf '%s' '2001887/api/v2/order/get_order_list1700000000abc123token558899' \
    #   | openssl dgst -sha256 -hmac 'partner-key-123' -hex
    assert (
        sign(KEY, 2001887, "/api/v2/order/get_order_list", 1700000000, "abc123token", 558899)
        == "b53578d50aeac05e60092479ae49cdcbd7a2eda0f4f3af9d80b297e0972d1d8e"
    )
    # printf '%s' '2001887/api/v2/auth/access_token/get1700000000' | openssl dgst ... -hex
    assert (
        sign(KEY, 2001887, "/api/v2/auth/access_token/get", 1700000000)
        == "61ce373b2a9ed48355c777c4a1ae96385d937433a490e03ce2ff8db8b3890d28"
    )


def test_push_authorization_matches_openssl() -> None:
    # printf '%s' 'https://example.com/shopee/push|{"code":3,"shop_id":558899}' \
    #   | openssl dgst -sha256 -hmac 'partner-key-123' -hex
    body = b'{"code":3,"shop_id":558899}'
    vector = "bf73f2efe3a863d8da0a02f51be8171e8e4d6529799bece6c336b710156b6d28"
    assert verify_push(KEY, "https://example.com/shopee/push", body, vector)
    assert not verify_push(KEY, "https://example.com/shopee/push", body + b" ", vector)
    assert not verify_push(KEY, "https://example.com/shopee/push", body, None)


def shopee_order(sn: str, update: int, status: str = "READY_TO_SHIP") -> dict[str, Any]:
    return {
        "order_sn": sn,
        "region": "MY",
        "currency": "MYR",
        "order_status": status,
        "create_time": update - 60,
        "update_time": update,
        "ship_by_date": update + 86400,
        "fulfillment_flag": "fulfilled_by_local_seller",
        "item_list": [
            {
                "item_id": 100,
                "item_sku": "PARENT",
                "model_id": 200,
                "model_sku": f"SKU-{sn}",
                "model_quantity_purchased": 2,
                # JSON numbers, as Shopee sends them: must arrive as exactly 45.9, no float.
                "model_discounted_price": 45.9,
                "model_original_price": 49.9,
            }
        ],
    }


class FakeShopee:
    """Orders listed by update_time; each window pages 2 at a time by cursor."""

    def __init__(self, orders: list[dict[str, Any]]) -> None:
        self.orders = orders
        self.tokens = 0
        self.refresh_tokens = ["refresh-0"]
        self.expire_token_after: int | None = None
        self.uses = 0
        self.script: list[Reply] = []
        self.list_calls: list[dict[str, str]] = []

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        if path == "/api/v2/auth/access_token/get":
            return self._refresh(query, json.loads(body))
        if self.script:
            return self.script.pop(0)
        expected = sign(
            KEY,
            query["partner_id"],
            path,
            query["timestamp"],
            query["access_token"],
            query["shop_id"],
        )
        if query["sign"] != expected:
            return _json(403, {"error": "error_sign", "message": "Wrong sign.", "request_id": "r"})
        self.uses += 1
        if query["access_token"] != f"access-{self.tokens}" or (
            self.expire_token_after is not None and self.uses > self.expire_token_after
        ):
            self.expire_token_after = None
            return _json(
                403,
                {
                    "error": "invalid_acceess_token",
                    "message": "Invalid access_token.",
                    "request_id": "r",
                },
            )
        if path == "/api/v2/order/get_order_list":
            return self._list(query)
        wanted = query["order_sn_list"].split(",")
        details = [o for o in self.orders if o["order_sn"] in wanted]
        return _json(
            200,
            {
                "error": "",
                "message": "",
                "request_id": "r",
                "response": {"order_list": details},
            },
        )

    def _refresh(self, query: dict[str, str], body: dict[str, Any]) -> Reply:
        assert query["sign"] == sign(
            KEY, query["partner_id"], "/api/v2/auth/access_token/get", query["timestamp"]
        )
        if body["refresh_token"] != self.refresh_tokens[-1]:
            return _json(403, {"error": "error_auth", "message": "Invalid refresh_token."})
        self.tokens += 1
        self.refresh_tokens.append(f"refresh-{self.tokens}")
        return _json(
            200,
            {
                "access_token": f"access-{self.tokens}",
                "refresh_token": self.refresh_tokens[-1],
                "expire_in": 14400,
                "error": "",
                "message": "",
            },
        )

    def _list(self, query: dict[str, str]) -> Reply:
        self.list_calls.append(query)
        start, end = int(query["time_from"]), int(query["time_to"])
        if end - start > 15 * 86400:
            return _json(400, {"error": "error_param", "message": "time range too long"})
        hits = [o for o in self.orders if start <= o["update_time"] <= end]
        offset = int(query["cursor"] or 0)
        page = hits[offset : offset + 2]
        more = offset + 2 < len(hits)
        response = {
            "more": more,
            "next_cursor": str(offset + 2) if more else "",
            "order_list": [{"order_sn": o["order_sn"]} for o in page],
        }
        return _json(200, {"error": "", "message": "", "request_id": "r", "response": response})


def make_source(
    client: httpx.AsyncClient, sleeps: Sleeps, rotated: list[SecretStr]
) -> ShopeeOrdersSource:
    async def keep(token: SecretStr) -> None:
        rotated.append(token)

    api = ShopeeApi(
        client,
        2001887,
        KEY,
        ShopeeShop(store_id="shopee-my-1", shop_id=558899),
        SecretStr("refresh-0"),
        host="https://shopee.test",
        on_refresh_token=keep,
        clock=lambda: NOW.timestamp(),
        throttle=Throttle(
            "shopee", backoff=Backoff(attempts=3, rng=random.Random(2)), sleep=sleeps
        ),
    )
    return ShopeeOrdersSource(api, NOW - timedelta(days=20), now=lambda: NOW)


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


def stamp(days_ago: float) -> int:
    return int((NOW - timedelta(days=days_ago)).timestamp())


async def test_orders_across_windows_and_pages(client_for: ClientFor, sleeps: Sleeps) -> None:
    orders = [shopee_order(f"2611{n:02d}", stamp(19 - n)) for n in range(7)]
    fake = FakeShopee(orders)
    rotated: list[SecretStr] = []
    sink, checkpoints = Collect(), MemoryCheckpoints()
    stats = await run_source(
        make_source(client_for(fake.handle), sleeps, rotated), sink, checkpoints
    )

    assert sorted(e.event_id for e in sink.events) == sorted(
        f"shopee:{o['order_sn']}:{o['update_time']}" for o in orders
    )
    assert stats.rejected == 0
    # Two 15-day windows cover the 20 days; the second starts where the first ended.
    windows = sorted({(q["time_from"], q["time_to"]) for q in fake.list_calls})
    assert len(windows) == 2
    assert windows[0][1] == windows[1][0]
    assert any(q["cursor"] == "2" for q in fake.list_calls)
    first = sink.events[0]
    assert isinstance(first, OrderEvent)
    assert (first.marketplace, first.status, first.lines[0].sku) == ("MY", "placed", "SKU-261100")
    assert first.lines[0].unit_price.amount == Decimal("45.9")
    assert json.loads(checkpoints.cursors["shopee:orders:shopee-my-1"])["time_from"] == int(
        NOW.timestamp()
    )


async def test_token_refresh_rotates_and_expiry_mid_run(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeShopee([shopee_order(f"A{n}", stamp(3 - n * 0.1)) for n in range(5)])
    fake.expire_token_after = 2
    rotated: list[SecretStr] = []
    sink = Collect()
    await run_source(
        make_source(client_for(fake.handle), sleeps, rotated), sink, MemoryCheckpoints()
    )
    assert len(sink.events) == 5
    # Shopee hands out a new refresh token each time; the caller got every one to persist.
    assert [t.get_secret_value() for t in rotated] == ["refresh-1", "refresh-2"]


async def test_throttled_then_malformed_order_kept_apart(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    orders = [shopee_order(f"B{n}", stamp(2 - n * 0.1)) for n in range(3)]
    orders[1]["order_status"] = "LOST_IN_SPACE"
    fake = FakeShopee(orders)
    fake.tokens = 0
    source = make_source(client_for(fake.handle), sleeps, [])
    fake.script = [_json(429, {"error": "too_many_request"}, {"Retry-After": "2"})]
    sink = Collect()
    rejected: list[Any] = []

    async def reject(error: Any) -> None:
        rejected.append(error)

    await run_source(source, sink, MemoryCheckpoints(), on_rejected=reject)
    assert len(sink.events) == 2
    assert source.api.throttle.waits == [2.0]
    assert "order 1 (B1): unknown order_status 'LOST_IN_SPACE'" in str(rejected[0])


# --- Product stock ------------------------------------------------------------------------

SHOP = ShopeeShop(store_id="shopee-my-1", shop_id=558899, region="MY")
PASS_TIME = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def stock_api(
    client: httpx.AsyncClient, sleeps: Sleeps, rotated: list[SecretStr] | None = None
) -> ShopeeApi:
    async def keep(token: SecretStr) -> None:
        (rotated if rotated is not None else []).append(token)

    return ShopeeApi(
        client,
        2001887,
        KEY,
        SHOP,
        SecretStr("refresh-0"),
        host="https://shopee.test",
        on_refresh_token=keep,
        clock=lambda: NOW.timestamp(),
        throttle=Throttle(
            "shopee", backoff=Backoff(attempts=3, rng=random.Random(2)), sleep=sleeps
        ),
    )


def stock_source(api: ShopeeApi) -> ShopeeStockSource:
    return ShopeeStockSource(api, now=lambda: PASS_TIME)


def catalogue() -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """55 items without models, then one with three models (one also in Shopee's warehouse,
    one without a model_sku): two get_item_list pages of 50."""
    items = [plain_item(1000 + n, stock=n) for n in range(55)]
    items.append({**plain_item(2000, 0), "has_model": True, "item_sku": "PARENT"})
    del items[-1]["stock_info_v2"]  # an item with models has its stock on the models
    models = {2000: [model(1, 7, sku="RED"), model(2, 3, shopee=40, sku="BLUE"), model(3, 5)]}
    return items, models


def inventory(events: Sequence[Event]) -> dict[tuple[str, str], InventoryEvent]:
    found = {(e.sku, e.warehouse): e for e in events if isinstance(e, InventoryEvent)}
    assert len(found) == len(events)
    return found


async def test_stock_pages_items_with_and_without_models(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    items, models = catalogue()
    fake = FakeShopeeShop(KEY, items=items, models=models)
    sink, checkpoints = Collect(), MemoryCheckpoints()
    source = stock_source(stock_api(client_for(fake.handle), sleeps))
    stats = await run_source(source, sink, checkpoints)

    assert (stats.pages, stats.rejected) == (2, 0)
    listed = [q["offset"] for path, q in fake.calls if path.endswith("get_item_list")]
    assert listed == ["0", "50"]
    # A finished listing saves offset 0: the next pass is a fresh snapshot.
    assert [c for _, c in checkpoints.saves] == ['{"offset":50}', '{"offset":0}']
    found = inventory(sink.events)
    assert len(found) == 55 + 4
    plain = found[("SKU-1007", "own")]
    assert (plain.available, plain.marketplace, plain.as_of) == (7, "MY", PASS_TIME)
    assert plain.event_id == "shopee:stock:558899:1007:0:own:7:0:1763700000"
    assert found[("RED", "own")].available == 7
    # Seller stock and Fulfilled-by-Shopee stock of one model are two snapshots.
    assert (found[("BLUE", "own")].available, found[("BLUE", "fba")].available) == (3, 40)
    # A model without model_sku is not its parent's item_sku (all models share that).
    assert found[("2000:3", "own")].available == 5


async def test_a_replayed_pass_gives_the_same_event_ids(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    items, models = catalogue()
    fake = FakeShopeeShop(KEY, items=items, models=models)
    first, second = Collect(), Collect()
    source = stock_source(stock_api(client_for(fake.handle), sleeps))
    await run_source(source, first, MemoryCheckpoints())
    await run_source(source, second, MemoryCheckpoints())
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    # A change of stock is a new event.
    fake.items[3]["stock_info_v2"] = stock_info(99)
    third = Collect()
    await run_source(source, third, MemoryCheckpoints())
    changed = {e.event_id for e in third.events} - {e.event_id for e in first.events}
    assert changed == {"shopee:stock:558899:1003:0:own:99:0:1763700000"}


async def test_bad_records_are_rejected_and_the_rest_kept(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    items = [plain_item(1, 4), plain_item(2, 5), plain_item(3, 6), plain_item(4, 1)]
    del items[1]["stock_info_v2"]
    items[2]["stock_info_v2"]["seller_stock"][0]["stock"] = -6
    items[3] = {**items[3], "has_model": True}
    items.append({**plain_item(5, 0), "has_model": True})
    items.append({"item_status": "NORMAL"})  # no item_id at all
    models = {4: [model(41, 2, sku="OK"), {**model(42, 1), "stock_info_v2": stock_info(None)}]}
    models[4][1]["stock_info_v2"]["shopee_stock"] = [{"location_id": "MYG", "stock": "many"}]
    fake = FakeShopeeShop(KEY, items=items, models=models)  # item 5: get_model_list errors
    sink, rejected = Collect(), Rejects()
    await run_source(
        stock_source(stock_api(client_for(fake.handle), sleeps)),
        sink,
        MemoryCheckpoints(),
        on_rejected=rejected,
    )
    assert sorted(inventory(sink.events)) == [("OK", "own"), ("SKU-1", "own")]
    where = "shopee:stock:shopee-my-1 get_item_list page 1 (offset 0)"
    assert [(e.source, e.reason) for e in rejected.errors] == [
        (f"{where} entry 5", "no integer item_id"),
        (f"{where} item 2", "no stock_info_v2"),
        (f"{where} item 3", "malformed stock_info_v2: negative stock -6"),
        (
            f"{where} item 4 model 42",
            "malformed stock_info_v2: invalid literal for int() with base 10: 'many'",
        ),
        (
            f"{where} item 5",
            "get_model_list failed: HTTP 200, error_item_not_found: Item not found. (request_id r)",
        ),
    ]


async def test_resume_from_a_mid_listing_cursor_and_after_a_broken_page(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    items, models = catalogue()
    fake = FakeShopeeShop(KEY, items=items, models=models)
    source = stock_source(stock_api(client_for(fake.handle), sleeps))
    checkpoints = MemoryCheckpoints()
    # The second page answers a body that is not JSON: the pass fails after page 1.
    fake.broken_offsets.add("50")
    first = Collect()
    with pytest.raises(SourceError, match="body is not JSON"):
        await run_source(source, first, checkpoints)
    assert len(first.events) == 50
    assert checkpoints.cursors[source.name] == '{"offset":50}'
    # The next pass resumes at offset 50, not at the start.
    fake.calls.clear()
    second = Collect()
    await run_source(source, second, checkpoints)
    assert [q["offset"] for p, q in fake.calls if p.endswith("get_item_list")] == ["50"]
    assert len(second.events) == 5 + 4
    assert checkpoints.cursors[source.name] == '{"offset":0}'


async def test_throttled_with_and_without_retry_after(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeShopeeShop(KEY, items=[plain_item(1, 4)])
    too_many = error("error_too_many_request", "Too many requests.")
    fake.script["/api/v2/product/get_item_list"] = [_json(429, too_many, {"Retry-After": "3"})]
    fake.script["/api/v2/product/get_item_base_info"] = [_json(429, too_many)]
    api = stock_api(client_for(fake.handle), sleeps)
    sink = Collect()
    await run_source(stock_source(api), sink, MemoryCheckpoints())
    assert [e.sku for e in sink.events] == ["SKU-1"]
    # Retry-After is obeyed; without it the jittered backoff (base 1s, attempt 0) decides.
    assert api.throttle.waits[0] == 3.0
    assert len(api.throttle.waits) == 2
    assert 0 <= api.throttle.waits[1] <= 1.0
    assert sleeps.waits == api.throttle.waits


async def test_token_expiry_during_a_stock_pass(client_for: ClientFor, sleeps: Sleeps) -> None:
    items, models = catalogue()
    fake = FakeShopeeShop(KEY, items=items, models=models, expire_after=3)
    rotated: list[SecretStr] = []
    api = stock_api(client_for(fake.handle), sleeps, rotated)
    sink = Collect()
    await run_source(stock_source(api), sink, MemoryCheckpoints())
    assert len(sink.events) == 55 + 4
    assert api.refreshes == 2
    # Shopee rotates the refresh token on each refresh; the caller got each one to keep.
    assert [t.get_secret_value() for t in rotated] == ["refresh-1", "refresh-2"]


def test_config_is_strict_and_stock_needs_regions() -> None:
    base = {
        "partner_id": 2001887,
        "shops": [{"store_id": "shopee-my-1", "shop_id": 558899}],
        "start": "2026-11-01T00:00:00+08:00",
    }
    assert ShopeeConfig.model_validate(base).host == "https://partner.shopeemobile.com"
    with pytest.raises(ValidationError, match="stock needs the region of every shop"):
        ShopeeConfig.model_validate({**base, "stock": True})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ShopeeConfig.model_validate({**base, "partner_key": "secret"})
    with pytest.raises(ValidationError, match="timezone"):
        ShopeeConfig.model_validate({**base, "start": "2026-11-01T00:00:00"})
    no_region = ShopeeShop(store_id="shopee-my-1", shop_id=558899)
    api = ShopeeApi(httpx.AsyncClient(), 2001887, KEY, no_region, SecretStr("refresh-0"))
    with pytest.raises(ValueError, match="needs a region for stock events"):
        ShopeeStockSource(api)


def test_order_lines_and_stock_agree_on_the_sku_of_a_model_without_model_sku() -> None:
    order = shopee_order("A1", stamp(1))
    order["item_list"][0]["model_sku"] = ""
    # What read_json gives for the JSON number 45.9.
    order["item_list"][0]["model_discounted_price"] = Decimal("45.9")
    event = order_event(order, SHOP, "t")
    [stock] = stock_events(model(200, 3), {"item_id": 100, "item_sku": "PARENT"}, SHOP, "t", NOW)
    assert event.lines[0].sku == stock.sku == "100:200"


class Rejects:
    def __init__(self) -> None:
        self.errors: list[InvalidEventError] = []

    async def __call__(self, error: InvalidEventError) -> None:
        self.errors.append(error)


# --- Push Mechanism -----------------------------------------------------------------------

CALLBACK = "https://hooks.example.com/shopee/push?tenant=a"


def authorization(body: bytes, url: str = CALLBACK, key: bytes = b"partner-key-123") -> str:
    # The documented recipe, computed here without the code under test.
    return hmac.new(key, url.encode() + b"|" + body, hashlib.sha256).hexdigest()


def test_push_authorization_against_an_independent_vector() -> None:
    body = (
        b'{"data":{"items":[],"ordersn":"220810QSK8S7BX","status":"PROCESSED",'
        b'"completed_scenario":"","update_time":1660123127},"shop_id":727720655,"code":3,'
        b'"timestamp":1660123127}'
    )
    header = authorization(body, "https://example.com/shopee/push")
    assert verify_push(KEY, "https://example.com/shopee/push", body, header)
    # The URL is part of what is signed: another path or a proxy's rewrite does not verify.
    assert not verify_push(KEY, "https://example.com/shopee/push/", body, header)
    assert not verify_push(SecretStr("other-key"), "https://example.com/shopee/push", body, header)


class PushRig:
    def __init__(self, url: str, fake: FakeShopeeShop, sink: Recorder, push: ShopeePush) -> None:
        self.url, self.fake, self.sink, self.push = url, fake, sink, push
        self.rejected = Rejects()

    async def post(self, body: bytes, header: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        headers["Authorization"] = header if header is not None else authorization(body)
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.post(self.url, content=body, headers=headers)


def status_push(sn: str, status: str, update: int, shop_id: int = 558899) -> bytes:
    data = {
        "items": [],
        "ordersn": sn,
        "status": status,
        "completed_scenario": "",
        "update_time": update,
    }
    return json.dumps({"data": data, "shop_id": shop_id, "code": 3, "timestamp": update}).encode()


@pytest.fixture
async def rig(client_for: ClientFor, sleeps: Sleeps) -> AsyncIterator[PushRig]:
    fake = FakeShopeeShop(KEY, orders=[shopee_order("2611A", stamp(1), "SHIPPED")])
    sink = Recorder()
    api = stock_api(client_for(fake.handle), sleeps)
    rejects = Rejects()
    push = ShopeePush(CALLBACK, KEY, [api], sink, on_rejected=rejects, timeout=0.5)
    runner = await serve_push(push, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    made = PushRig(f"http://127.0.0.1:{port}{push.path}", fake, sink, push)
    made.rejected = rejects
    try:
        yield made
    finally:
        await runner.cleanup()


async def test_order_push_is_fetched_and_handed_off_before_200(rig: PushRig) -> None:
    assert rig.push.path == "/shopee/push"
    response = await rig.post(status_push("2611A", "SHIPPED", stamp(1)))
    # Shopee counts only a 2xx with an empty body as delivered.
    assert (response.status_code, response.content) == (200, b"")
    [[event]] = rig.sink.batches
    assert isinstance(event, OrderEvent)
    assert (event.event_id, event.status) == (f"shopee:2611A:{stamp(1)}", "shipped")
    [(path, query)] = rig.fake.calls
    assert (path, query["order_sn_list"], query["shop_id"]) == (
        "/api/v2/order/get_order_detail",
        "2611A",
        "558899",
    )


async def test_bad_signature_is_refused(rig: PushRig) -> None:
    body = status_push("2611A", "SHIPPED", stamp(1))
    signed_for_another_url = authorization(body, "http://127.0.0.1/shopee/push")
    assert (await rig.post(body, signed_for_another_url)).status_code == 401
    assert (await rig.post(body, "")).status_code == 401
    assert rig.sink.batches == []
    assert rig.fake.calls == []


async def test_repeated_push_is_handed_off_once(rig: PushRig) -> None:
    body = status_push("2611A", "SHIPPED", stamp(1))
    responses = [await rig.post(body) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(rig.sink.batches) == 1
    assert rig.push.duplicates == 2


async def test_failed_or_slow_hand_off_answers_503_so_shopee_retries(rig: PushRig) -> None:
    body = status_push("2611A", "SHIPPED", stamp(1))
    rig.sink.fail = 1
    assert (await rig.post(body)).status_code == 503
    rig.sink.delay = 1.0  # longer than the receiver's 0.5s budget
    started = time.monotonic()
    assert (await rig.post(body)).status_code == 503
    assert time.monotonic() - started < PUSH_TIMEOUT
    rig.sink.delay = 0.0
    # Shopee's retry of the same push now goes through: it was not remembered as done.
    assert (await rig.post(body)).status_code == 200
    assert len(rig.sink.batches) == 1


async def test_unknown_shop_other_codes_and_garbage_are_answered_200(rig: PushRig) -> None:
    unknown = await rig.post(status_push("2611A", "SHIPPED", stamp(1), shop_id=1))
    tracking = json.dumps({"data": {"ordersn": "2611A"}, "shop_id": 558899, "code": 4}).encode()
    other = await rig.post(tracking)
    garbage = await rig.post(b'{"code": 3, "data": ')
    assert [r.status_code for r in (unknown, other, garbage)] == [200, 200, 200]
    assert rig.sink.batches == []
    assert (rig.push.unknown_shops, rig.push.ignored) == (1, 1)
    assert rig.rejected.errors[0].reason.startswith("body is not JSON")


async def test_order_missing_from_detail_is_retried_and_bad_order_rejected(rig: PushRig) -> None:
    assert (await rig.post(status_push("NOPE", "SHIPPED", stamp(1)))).status_code == 503
    broken = shopee_order("2611B", stamp(1), "LOST_IN_SPACE")
    rig.fake.orders.append(broken)
    assert (await rig.post(status_push("2611B", "SHIPPED", stamp(1)))).status_code == 200
    assert rig.sink.batches == []
    assert "(2611B): unknown order_status 'LOST_IN_SPACE'" in str(rig.rejected.errors[0])


def test_push_timeout_must_fit_in_shopees_three_seconds() -> None:
    with pytest.raises(ValueError, match="under Shopee's 3s"):
        ShopeePush(CALLBACK, KEY, [], Recorder(), timeout=3.0)


async def test_secrets_never_reach_the_logs(
    client_for: ClientFor, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()  # as make_client() does in production
    caplog.set_level(logging.DEBUG)
    items, models = catalogue()
    fake = FakeShopeeShop(KEY, items=items, models=models, expire_after=2)
    fake.orders.append(shopee_order("2611A", stamp(1)))
    fake.script["/api/v2/product/get_item_list"] = [_json(429, {"error": "x"})]
    api = stock_api(client_for(fake.handle), sleeps)
    await run_source(stock_source(api), Collect(), MemoryCheckpoints())
    failing = Recorder()
    failing.fail = 1
    push = ShopeePush(CALLBACK, KEY, [api], failing, timeout=0.5)
    runner = await serve_push(push, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{push.path}"
        body = status_push("2611A", "READY_TO_SHIP", stamp(1))
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(url, content=body, headers={"Authorization": "bad"})
            assert answer.status_code == 401
            answer = await client.post(
                url, content=body, headers={"Authorization": authorization(body)}
            )
            assert answer.status_code == 503
    finally:
        await runner.cleanup()
    assert api.refreshes == 2  # so there were tokens to leak
    # The lines that could carry them were written, without their query strings.
    assert "hand-off failed" in caplog.text
    assert "shopee: 429, retrying" in caplog.text
    # httpx logged the requests (so the checks below are not vacuous), with the query cut off
    # (or, once the sinks' filter is installed in the same process, the whole path).
    assert "HTTP Request: GET https://shopee.test/" in caplog.text
    for secret in ("partner-key-123", "access-1", "access-2", "refresh-1", "refresh-2"):
        assert secret not in caplog.text
    assert authorization(body) not in caplog.text


async def test_concurrent_calls_share_one_refresh(sleeps: Sleeps) -> None:
    # A poll and a push at once: without one refresh at a time, the second would spend the
    # refresh token the first had just rotated away, and fail.
    fake = FakeShopeeShop(KEY, orders=[shopee_order("2611A", stamp(1))])

    async def slow_token_endpoint(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/auth/access_token/get":
            await asyncio.sleep(0.01)  # lets the other caller run meanwhile
        query = dict(request.url.params.items())
        status, headers, content = fake.handle(
            request.method, request.url.path, query, request.headers, request.content
        )
        return httpx.Response(status, headers=headers, content=content)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow_token_endpoint)) as client:
        api = stock_api(client, sleeps)
        params = {"order_sn_list": "2611A"}
        path = "/api/v2/order/get_order_detail"
        first, second = await asyncio.gather(api.get(path, params), api.get(path, params))
    assert first == second
    assert api.refreshes == 1
