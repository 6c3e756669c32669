"""TikTok Shop 202309: signatures against published and independently computed vectors, orders
by update time with page tokens, resume, throttling, token expiry, malformed data, inventory,
and the webhook receiver over a real aiohttp server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError
from unit.connectors.fakes import Recorder, Reply, Sleeps, _json
from unit.connectors.fakes_tiktok import (
    APP_KEY,
    APP_SECRET,
    SHOP_CIPHER,
    SHOP_ID,
    FakeTikTok,
    envelope,
    line_item,
    tiktok_order,
)

from connectors.api import Backoff, Throttle, install_redaction
from connectors.base import SourceError, run_source
from connectors.checkpoint import MemoryCheckpoints
from connectors.tiktok import (
    TikTokApi,
    TikTokConfig,
    TikTokInventorySource,
    TikTokOrdersSource,
    TikTokShop,
    TikTokWebhooks,
    order_event,
    sign,
    verify_webhook,
    webhook_signature,
)
from rules.errors import InvalidEventError
from streams.events import Event, InventoryEvent, OrderEvent

NOW = datetime(2026, 11, 21, tzinfo=UTC)
SHOP = TikTokShop(
    store_id="tiktok-us-1",
    shop_id=SHOP_ID,
    shop_cipher=SHOP_CIPHER,
    marketplace="US",
    product_ids=["P1", "P2"],
    fbt_warehouse_ids=["FBT-1"],
)
ClientFor = Callable[[Callable[..., Reply]], httpx.AsyncClient]


def stamp(days_ago: float) -> int:
    return int((NOW - timedelta(days=days_ago)).timestamp())


# --- signatures -----------------------------------------------------------------------------


def test_sign_matches_the_published_example() -> None:
    # "Sign your API request": Get Authorized Shops with app_secret e59af819cc.
    query = {"app_key": "29a39d", "timestamp": "1623812664"}
    published = "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8"
    assert sign(SecretStr("e59af819cc"), "/authorization/202309/shops", query) == published
    # sign and access_token never take part in the signature.
    noisy = {**query, "sign": "old", "access_token": "TTP_x"}
    assert sign(SecretStr("e59af819cc"), "/authorization/202309/shops", noisy) == published


def test_sign_with_a_body_matches_openssl() -> None:
    # The docs' Update Shop Webhook base string, wrapped in the secret:
    # printf '%s' 'e59af819cc/event/202309/webhooksapp_key68xu9ks5p4i8shop_cipherROW_xkMbgAAAe
    #   VAQra0eZWebFQq5aIKtimestamp1696909648{"address":...,"event_type":"PACKAGE_UPDATE"}
    #   e59af819cc' | openssl dgst -sha256 -hmac 'e59af819cc' -hex
    body = b'{"address":"https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}'
    query = {
        "timestamp": "1696909648",
        "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK",
        "app_key": "68xu9ks5p4i8",
    }
    assert (
        sign(SecretStr("e59af819cc"), "/event/202309/webhooks", query, body)
        == "cd0d6268252f4ba293bf7ea4c0a2873bf9beec600d22530638564ab301435f7a"
    )


def test_webhook_signature_matches_the_published_example() -> None:
    # "Webhooks overview": app key abcdef, app secret 123.
    body = (
        b'{"type":1,"tts_notification_id":"7380066284010030890","shop_id":"7495540735365777507",'
        b'"timestamp":1718305585,"data":{"is_on_hold_order":true,"order_id":"576653688135258178",'
        b'"order_status":"UNPAID","update_time":1718305585}}'
    )
    published = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05"
    assert webhook_signature("abcdef", SecretStr("123"), body) == published
    assert verify_webhook("abcdef", SecretStr("123"), body, published.upper())
    assert not verify_webhook("abcdef", SecretStr("123"), body + b" ", published)
    assert not verify_webhook("abcdef", SecretStr("123"), body, None)


def test_config_forbids_unknown_keys_and_secrets() -> None:
    config = TikTokConfig.model_validate(
        {"app_key": APP_KEY, "shops": [SHOP.model_dump()], "start": "2026-11-01T00:00:00Z"}
    )
    assert config.api_host == "https://open-api.tiktokglobalshop.com"
    assert config.auth_host == "https://auth.tiktok-shops.com"
    with pytest.raises(ValidationError, match="app_secret"):
        TikTokConfig.model_validate({**config.model_dump(), "app_secret": "nope"})


# --- order mapping --------------------------------------------------------------------------


def test_order_mapping_groups_units_and_reads_flags() -> None:
    order = tiktok_order(7, stamp(1))
    order["line_items"].append(line_item(4, "SKU-B", display_status="CANCELLED"))
    order["line_items"].append(line_item(5, "", "9.99"))
    order.update(fulfillment_type="FULFILLMENT_BY_TIKTOK", is_sample_order=True)
    event = order_event(order, SHOP, "t")
    assert event.event_id == f"tiktok:{order['id']}:{order['update_time']}"
    assert [(x.sku, x.quantity, x.unit_price.amount) for x in event.lines] == [
        ("SKU-A", 2, Decimal("12.50")),
        ("SKU-B", 1, Decimal("12.50")),  # its cancelled unit is not a sale
        ("sku:1729300005", 1, Decimal("9.99")),
    ]
    assert (event.status, event.fulfillment_channel, event.is_test) == (
        "placed",
        "marketplace",
        True,
    )
    assert event.ship_by == datetime.fromtimestamp(order["rts_sla_time"], UTC)
    cancelled = order_event({**order, "status": "CANCELLED"}, SHOP, "t")
    assert cancelled.status == "cancelled"
    assert sum(x.quantity for x in cancelled.lines) == 5  # what was cancelled, in full
    statuses = {
        s: order_event({**order, "status": s}, SHOP, "t").status
        for s in ("IN_TRANSIT", "COMPLETED")
    }
    assert statuses == {"IN_TRANSIT": "shipped", "COMPLETED": "delivered"}


# --- polling --------------------------------------------------------------------------------


def make_api(client: httpx.AsyncClient, sleeps: Sleeps, **changes: Any) -> TikTokApi:
    settings: dict[str, Any] = {
        "api_host": "https://tts.test",
        "auth_host": "https://auth.test",
        "clock": lambda: NOW.timestamp(),
        "throttle": Throttle(
            "tiktok", backoff=Backoff(attempts=3, rng=random.Random(3)), sleep=sleeps
        ),
        **changes,
    }
    return TikTokApi(
        client, APP_KEY, SecretStr(APP_SECRET), SHOP, SecretStr("refresh-0"), **settings
    )


def orders_source(api: TikTokApi, days: float = 3) -> TikTokOrdersSource:
    return TikTokOrdersSource(api, NOW - timedelta(days=days), now=lambda: NOW)


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.rejected: list[InvalidEventError] = []

    async def __call__(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def reject(self, error: InvalidEventError) -> None:
        self.rejected.append(error)


def ids(events: Sequence[Event]) -> list[str]:
    return [e.order_id for e in events if isinstance(e, OrderEvent)]


async def test_orders_page_across_windows(client_for: ClientFor, sleeps: Sleeps) -> None:
    orders = [tiktok_order(n, stamp(9 - n)) for n in range(9)]
    fake = FakeTikTok(orders, now=int(NOW.timestamp()))
    sink, checkpoints = Collect(), MemoryCheckpoints()
    api = make_api(client_for(fake.handle), sleeps)
    stats = await run_source(orders_source(api, days=10), sink, checkpoints)

    assert ids(sink.events) == [o["id"] for o in orders]
    searches = [(q, body) for path, q, body in fake.calls if path.endswith("/search")]
    windows = sorted({(b["update_time_ge"], b["update_time_lt"]) for _, b in searches})
    assert len(windows) == 2
    assert windows[0][1] == windows[1][0]
    assert windows[1][1] == int((NOW - timedelta(minutes=2)).timestamp())  # ends before now
    assert {q["sort_field"] for q, _ in searches} == {"update_time"}
    assert any(q.get("page_token") == "offset-2" for q, _ in searches)
    assert stats.pages == len(searches)
    assert stats.rejected == 0
    # Caught up: a second pass asks for nothing.
    assert [
        p async for p in orders_source(api).pages(checkpoints.cursors[orders_source(api).name])
    ] == []


async def test_resume_from_a_checkpoint_mid_paging(client_for: ClientFor, sleeps: Sleeps) -> None:
    orders = [tiktok_order(n, stamp(2 - n * 0.1)) for n in range(5)]
    fake = FakeTikTok(orders, now=int(NOW.timestamp()))
    checkpoints = MemoryCheckpoints()
    api = make_api(client_for(fake.handle), sleeps)
    await run_source(orders_source(api), Collect(), checkpoints)
    after_first_page = checkpoints.saves[0][1]
    assert json.loads(after_first_page)["page_token"] == "offset-2"

    rest = [p async for p in orders_source(api).pages(after_first_page)]
    assert ids([e for p in rest for e in p.events]) == [o["id"] for o in orders[2:]]


async def test_throttled_with_and_without_retry_after(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeTikTok([tiktok_order(1, stamp(1))], now=int(NOW.timestamp()))
    too_many = {"code": 36009002, "message": "Too many requests", "request_id": "r"}
    fake.script["/order/202309/orders/search"] = [
        _json(429, too_many, {"Retry-After": "7"}),
        _json(429, too_many),
        envelope(None, 36009002, "Too many requests"),
    ]
    sink = Collect()
    api = make_api(client_for(fake.handle), sleeps)
    await run_source(orders_source(api), sink, MemoryCheckpoints())

    assert ids(sink.events) == [fake.orders[0]["id"]]
    waits = api.throttle.waits
    assert waits[0] == 7.0  # Retry-After obeyed
    assert len(waits) == 3
    assert 0 <= waits[1] <= 2.0
    assert 0 <= waits[2] <= 1.0
    assert sleeps.waits == waits


async def test_token_expired_mid_run_is_refreshed_and_rotated(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeTikTok(
        [tiktok_order(n, stamp(2 - n * 0.1)) for n in range(5)], now=int(NOW.timestamp())
    )
    fake.expire_after = 1
    rotated: list[SecretStr] = []

    async def keep(token: SecretStr) -> None:
        rotated.append(token)

    sink = Collect()
    api = make_api(client_for(fake.handle), sleeps, on_refresh_token=keep)
    await run_source(orders_source(api), sink, MemoryCheckpoints())
    assert len(sink.events) == 5
    assert api.refreshes == fake.tokens_issued == 2
    assert [t.get_secret_value() for t in rotated] == ["refresh-1", "refresh-2"]


async def test_token_refreshed_early_before_it_expires(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeTikTok([tiktok_order(1, stamp(1))], now=int(NOW.timestamp()))
    clock = [NOW.timestamp()]
    api = make_api(client_for(fake.handle), sleeps, clock=lambda: clock[0])
    await api.call("GET", "/order/202309/orders", {"ids": "x"})
    # Five minutes before the documented expiry (7 days), TikTok's clock moves with ours.
    clock[0] += 7 * 86400 - 300
    fake.now = int(clock[0])
    await api.call("GET", "/order/202309/orders", {"ids": "x"})
    # The fake still takes the old token here: only an early refresh explains a second one.
    assert api.refreshes == fake.tokens_issued == 2


async def test_malformed_page_raises_naming_source_and_page(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    fake = FakeTikTok(
        [tiktok_order(n, stamp(1 - n * 0.1)) for n in range(4)], now=int(NOW.timestamp())
    )
    api = make_api(client_for(fake.handle), sleeps)
    source = orders_source(api)
    pages = source.pages(None)
    await anext(pages)
    fake.script["/order/202309/orders/search"] = [envelope({"orders": "oops", "total_count": 4})]
    with pytest.raises(SourceError) as raised:
        await anext(pages)
    assert raised.value.where.startswith("tiktok:orders:tiktok-us-1 orders/search page 2")
    assert "no orders list" in raised.value.reason


async def test_api_error_code_raises(client_for: ClientFor, sleeps: Sleeps) -> None:
    fake = FakeTikTok([], now=int(NOW.timestamp()))
    api = make_api(client_for(fake.handle), sleeps)
    api.app_secret = SecretStr("not-the-secret")
    with pytest.raises(SourceError, match="code 36004004"):
        await api.call("GET", "/order/202309/orders", {"ids": "1"})
    api.app_secret = SecretStr(APP_SECRET)
    await api.call("GET", "/order/202309/orders", {"ids": "1"})
    api.app_secret = SecretStr("not-the-secret")  # token still valid: only the sign is wrong
    with pytest.raises(SourceError, match="code 106001: Invalid signature"):
        await api.call("GET", "/order/202309/orders", {"ids": "1"})


async def test_malformed_order_is_rejected_and_the_rest_kept(
    client_for: ClientFor, sleeps: Sleeps
) -> None:
    orders = [tiktok_order(n, stamp(1 - n * 0.1)) for n in range(3)]
    orders[1]["line_items"][0]["sale_price"] = "12.5.0"
    fake = FakeTikTok(orders, now=int(NOW.timestamp()))
    sink = Collect()
    api = make_api(client_for(fake.handle), sleeps)
    stats = await run_source(orders_source(api), sink, MemoryCheckpoints(), on_rejected=sink.reject)
    assert ids(sink.events) == [orders[0]["id"], orders[2]["id"]]
    assert stats.rejected == 1
    [error] = sink.rejected
    assert error.source.startswith("tiktok:orders:tiktok-us-1 orders/search page 1")
    assert f"order 1 ({orders[1]['id']})" in error.source


# --- inventory ------------------------------------------------------------------------------


def sku(sku_id: str, seller_sku: str, *warehouses: tuple[str, int, int]) -> dict[str, Any]:
    return {
        "id": sku_id,
        "seller_sku": seller_sku,
        "total_available_quantity": sum(w[1] for w in warehouses),
        "total_committed_quantity": sum(w[2] for w in warehouses),
        "warehouse_inventory": [
            {"warehouse_id": w, "available_quantity": a, "committed_quantity": c}
            for w, a, c in warehouses
        ],
    }


async def test_inventory_per_sku_and_warehouse_kind(client_for: ClientFor, sleeps: Sleeps) -> None:
    fake = FakeTikTok([], now=int(NOW.timestamp()))
    fake.inventory = {
        "P1": [sku("S1", "SKU-A", ("W-1", 5, 1), ("W-2", 3, 0), ("FBT-1", 10, 2))],
        "P2": [sku("S2", "SKU-B", ("W-1", 0, 0)), {"id": "S3", "warehouse_inventory": [{}]}],
    }
    sink, checkpoints = Collect(), MemoryCheckpoints()
    source = TikTokInventorySource(make_api(client_for(fake.handle), sleeps), now=lambda: NOW)
    await run_source(source, sink, checkpoints, on_rejected=sink.reject)

    stock = {
        (e.sku, e.warehouse): (e.available, e.reserved)
        for e in sink.events
        if isinstance(e, InventoryEvent)
    }
    assert stock == {("SKU-A", "own"): (8, 1), ("SKU-A", "fba"): (10, 2), ("SKU-B", "own"): (0, 0)}
    assert sink.events[0].event_id == f"tiktok:inv:tiktok-us-1:S1:own:{int(NOW.timestamp())}"
    assert "(S3)" in sink.rejected[0].source
    assert [b["product_ids"] for _, _, b in fake.calls] == [["P1", "P2"]]
    assert json.loads(checkpoints.cursors[source.name])["batch"] == 1


# --- secrets --------------------------------------------------------------------------------


async def test_secrets_never_reach_the_logs(
    client_for: ClientFor, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()  # what make_client does in production
    caplog.set_level(logging.DEBUG)
    fake = FakeTikTok(
        [tiktok_order(n, stamp(1 - n * 0.1)) for n in range(3)], now=int(NOW.timestamp())
    )
    fake.expire_after = 1
    fake.script["/order/202309/orders/search"] = [_json(429, {"code": 36009002}), _json(503, {})]
    api = make_api(client_for(fake.handle), sleeps)
    await run_source(orders_source(api), Collect(), MemoryCheckpoints())
    api.app_secret = SecretStr("not-the-secret")
    with pytest.raises(SourceError) as raised:
        await api.call("GET", "/order/202309/orders", {"ids": "1"})

    text = caplog.text + str(raised.value)
    assert "HTTP Request" in caplog.text  # httpx did log the requests, without their queries
    for secret in (APP_SECRET, "not-the-secret", "refresh-0", "refresh-1", "access-1", "access-2"):
        assert secret not in text


# --- webhooks -------------------------------------------------------------------------------


@pytest.fixture
async def endpoint(
    client_for: ClientFor, sleeps: Sleeps
) -> AsyncIterator[tuple[str, Recorder, TikTokWebhooks, FakeTikTok, list[InvalidEventError]]]:
    fake = FakeTikTok([tiktok_order(1, stamp(0.5), "IN_TRANSIT")], now=int(NOW.timestamp()))
    recorder, rejected = Recorder(), []

    async def reject(error: InvalidEventError) -> None:
        rejected.append(error)

    api = make_api(client_for(fake.handle), sleeps)
    hooks = TikTokWebhooks(APP_KEY, SecretStr(APP_SECRET), [api], recorder, on_rejected=reject)
    runner = web.AppRunner(hooks.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/webhooks/tiktok", recorder, hooks, fake, rejected
    finally:
        await runner.cleanup()


def notification(notification_id: str, order_id: str, kind: int = 1) -> bytes:
    body = {
        "type": kind,
        "tts_notification_id": notification_id,
        "shop_id": SHOP_ID,
        "timestamp": int(NOW.timestamp()),
        "data": {"order_id": order_id, "order_status": "IN_TRANSIT", "update_time": 1},
    }
    return json.dumps(body).encode()


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), APP_KEY.encode() + body, hashlib.sha256).hexdigest()
    return {"Authorization": digest, "Content-Type": "application/json"}


async def test_webhook_fetches_the_order_and_hands_it_off(endpoint: Any) -> None:
    url, recorder, hooks, fake, _ = endpoint
    order_id = fake.orders[0]["id"]
    body = notification("n-1", order_id)
    async with httpx.AsyncClient(timeout=5) as client:
        bad = await client.post(
            url, content=body, headers={**signed(body), "Authorization": "0" * 64}
        )
        assert bad.status_code == 401
        assert (await client.post(url, content=body, headers=signed(body))).status_code == 200
        assert (await client.post(url, content=body, headers=signed(body))).status_code == 200
    [[event]] = recorder.batches  # the duplicate was not handed off again
    assert isinstance(event, OrderEvent)
    assert (event.order_id, event.status) == (order_id, "shipped")
    assert hooks.duplicates == 1
    assert [(p, q["ids"]) for p, q, _ in fake.calls] == [("/order/202309/orders", order_id)]


async def test_webhook_sink_failure_answers_503_then_retry_succeeds(endpoint: Any) -> None:
    url, recorder, _, fake, _ = endpoint
    body = notification("n-2", fake.orders[0]["id"])
    recorder.fail = 1
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(url, content=body, headers=signed(body))).status_code == 503
        assert (await client.post(url, content=body, headers=signed(body))).status_code == 200
    assert len(recorder.batches) == 1


async def test_webhook_other_types_and_bad_orders(endpoint: Any) -> None:
    url, recorder, _, fake, rejected = endpoint
    fake.orders.append({**tiktok_order(2, stamp(0.4)), "status": "TELEPORTED"})
    package = notification("n-3", fake.orders[0]["id"], kind=4)
    broken = notification("n-4", fake.orders[1]["id"])
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(url, content=package, headers=signed(package))).status_code == 200
        assert (await client.post(url, content=broken, headers=signed(broken))).status_code == 200
    assert recorder.batches == []
    assert fake.calls[0][1]["ids"] == fake.orders[1]["id"]
    assert "unknown order status 'TELEPORTED'" in rejected[0].reason
    assert rejected[0].source.startswith("tiktok webhook n-4")


async def test_webhook_fetch_failure_answers_503(endpoint: Any) -> None:
    url, recorder, _, fake, _ = endpoint
    fake.script["/order/202309/orders"] = [envelope(None, 36009003, "Internal error", 500)] * 3
    body = notification("n-5", fake.orders[0]["id"])
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(url, content=body, headers=signed(body))).status_code == 503
    await asyncio.sleep(0)
    assert recorder.batches == []


async def test_concurrent_callers_share_one_refresh(sleeps: Sleeps) -> None:
    fake = FakeTikTok([tiktok_order(1, stamp(1))], now=int(NOW.timestamp()))

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let the other callers run, as a real network would
        query = dict(request.url.params.items())
        status, headers, content = fake.handle(
            request.method, request.url.path, query, request.headers, request.content
        )
        return httpx.Response(status, headers=headers, content=content)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        api = make_api(client, sleeps)
        calls = [api.call("GET", "/order/202309/orders", {"ids": "x"}) for _ in range(3)]
        await asyncio.gather(*calls)
    # Three refreshes would have spent the rotated refresh token and failed.
    assert api.refreshes == fake.tokens_issued == 1
