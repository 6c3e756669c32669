"""Shopify webhooks over a real aiohttp server: HMAC, dedupe by webhook id, 503 when the
hand-off fails (so Shopify retries), and the payload mapping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from unit.connectors.fakes import Recorder

from connectors.shopify import (
    ShopifyConfig,
    ShopifyShop,
    ShopifyWebhooks,
    events_for,
    serve,
    signature,
    verify,
)
from rules.errors import InvalidEventError
from streams.events import InventoryEvent, OrderEvent

SECRET = SecretStr("hush")
SHOP = ShopifyShop(store_id="shopify-us-1", marketplace="US", inventory_skus={"808950810": "SKU-1"})
CONFIG = ShopifyConfig(secret=SECRET, shops={"example.myshopify.com": SHOP})


def test_signature_matches_an_independent_vector() -> None:
    # printf '%s' '<body>' | openssl dgst -sha256 -hmac 'hush' -binary | base64
    body = b'{"id":820982911946154508,"updated_at":"2026-11-20T10:00:00-05:00"}'
    assert signature(SECRET, body) == "fubNvhFMPmzwG4N1p/4qsBaBDPIAISa6ykDAntdWkQM="
    assert verify(SECRET, body, "fubNvhFMPmzwG4N1p/4qsBaBDPIAISa6ykDAntdWkQM=")
    assert not verify(SECRET, body + b" ", "fubNvhFMPmzwG4N1p/4qsBaBDPIAISa6ykDAntdWkQM=")
    assert not verify(SECRET, body, None)


def order(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 820982911946154508,
        "name": "#1001",
        "created_at": "2026-11-20T09:00:00-05:00",
        "updated_at": "2026-11-20T10:00:00-05:00",
        "currency": "USD",
        "financial_status": "paid",
        "fulfillment_status": None,
        "cancelled_at": None,
        "test": False,
        "line_items": [
            {
                "id": 466157049,
                "variant_id": 39072856,
                "sku": "SKU-1",
                "quantity": 2,
                "price": "199.00",
                "price_set": {
                    "shop_money": {"amount": "199.00", "currency_code": "USD"},
                    "presentment_money": {"amount": "180.00", "currency_code": "EUR"},
                },
            },
            {"id": 2, "variant_id": 7, "sku": "", "quantity": 1, "price": "5.50"},
            {"id": 3, "variant_id": 8, "sku": "GONE", "quantity": 0, "price": "1.00"},
        ],
    }
    return {**base, **changes}


def test_order_mapping() -> None:
    [event] = events_for("orders/create", order(), SHOP, "t")
    assert isinstance(event, OrderEvent)
    assert event.event_id == "shopify:820982911946154508:2026-11-20T10:00:00-05:00"
    assert [(line.sku, line.quantity, str(line.unit_price.amount)) for line in event.lines] == [
        ("SKU-1", 2, "199.00"),  # shop money, not the buyer's presentment currency
        ("variant:7", 1, "5.50"),
    ]
    assert event.status == "placed"
    statuses = [
        events_for("orders/updated", order(**change), SHOP, "t")[0]
        for change in (
            {"cancelled_at": "2026-11-20T11:00:00-05:00"},
            {"financial_status": "refunded"},
            {"fulfillment_status": "fulfilled"},
            {"test": True},
        )
    ]
    assert [e.status for e in statuses if isinstance(e, OrderEvent)] == [
        "cancelled",
        "refunded",
        "shipped",
        "placed",
    ]
    assert isinstance(statuses[3], OrderEvent)
    assert statuses[3].is_test


def test_inventory_and_refund_mapping() -> None:
    level = {
        "inventory_item_id": 808950810,
        "location_id": 655441491,
        "available": -2,
        "updated_at": "2026-11-20T10:00:00-05:00",
    }
    [event] = events_for("inventory_levels/update", level, SHOP, "t")
    assert isinstance(event, InventoryEvent)
    assert (event.sku, event.available, event.warehouse) == ("SKU-1", 0, "own")
    assert events_for("inventory_levels/update", {**level, "available": None}, SHOP, "t") == []
    assert events_for("refunds/create", {"id": 1, "order_id": 2}, SHOP, "t") == []


@pytest.fixture
async def endpoint() -> AsyncIterator[
    tuple[str, Recorder, ShopifyWebhooks, list[InvalidEventError]]
]:
    recorder, rejected = Recorder(), []

    async def reject(error: InvalidEventError) -> None:
        rejected.append(error)

    webhooks = ShopifyWebhooks(CONFIG, recorder, on_rejected=reject, handoff_timeout=0.5)
    runner = await serve(webhooks, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/webhooks/shopify", recorder, webhooks, rejected
    finally:
        await runner.cleanup()


def headers(body: bytes, webhook_id: str, topic: str = "orders/create") -> dict[str, str]:
    digest = hmac.new(b"hush", body, hashlib.sha256).digest()
    return {
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "Content-Type": "application/json",
    }


async def test_endpoint_verifies_dedupes_and_retries(endpoint: Any) -> None:
    url, recorder, webhooks, _ = endpoint
    body = json.dumps(order()).encode()
    async with httpx.AsyncClient(timeout=5) as client:
        bad = await client.post(
            url, content=body, headers={**headers(body, "w1"), "X-Shopify-Hmac-Sha256": "AAAA"}
        )
        assert bad.status_code == 401
        recorder.fail = 1
        assert (
            await client.post(url, content=body, headers=headers(body, "w1"))
        ).status_code == 503
        assert (
            await client.post(url, content=body, headers=headers(body, "w1"))
        ).status_code == 200
        again = await client.post(url, content=body, headers=headers(body, "w1"))
        assert (again.status_code, again.text) == (200, "duplicate")
    assert len(recorder.batches) == 1
    assert webhooks.duplicates == 1


async def test_slow_hand_off_answers_503_before_shopify_gives_up(endpoint: Any) -> None:
    url, recorder, _, _ = endpoint
    recorder.delay = 2.0
    body = json.dumps(order()).encode()
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(url, content=body, headers=headers(body, "w2"))
    assert response.status_code == 503
    assert recorder.batches == []


async def test_unparseable_payload_is_rejected_not_retried(endpoint: Any) -> None:
    url, recorder, _, rejected = endpoint
    body = b'{"id": 1, "line_items": "nope"'
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(url, content=body, headers=headers(body, "w3"))
    assert response.status_code == 200
    assert recorder.batches == []
    assert rejected[0].source == "shopify orders/create webhook w3"
    assert rejected[0].reason.startswith("body is not JSON")


# --- A secret per shop, dates by creation, non-sales, config mistakes (issue 13) -------------


def signed(body: bytes, secret: bytes, domain: str, webhook_id: str) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
    return {
        "X-Shopify-Hmac-Sha256": digest,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": domain,
    }


async def test_webhooks_created_in_a_shop_admin_are_signed_with_that_shop_secret() -> None:
    other = ShopifyShop(store_id="shopify-jp-1", marketplace="JP")
    config = ShopifyConfig(
        secret=SECRET,
        shops={"example.myshopify.com": SHOP, "jp-shop.myshopify.com": other},
        shop_secrets={"jp-shop.myshopify.com": SecretStr("jp-admin-secret")},
    )
    recorder = Recorder()
    runner = await serve(ShopifyWebhooks(config, recorder), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/shopify"
    body = json.dumps(order()).encode()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            own = await client.post(
                url,
                content=body,
                headers=signed(body, b"jp-admin-secret", "jp-shop.myshopify.com", "a"),
            )
            # The app's secret is not that shop's: a forgery for it fails.
            app = await client.post(
                url, content=body, headers=signed(body, b"hush", "jp-shop.myshopify.com", "b")
            )
            # The shop's secret does not sign for another shop.
            cross = await client.post(
                url,
                content=body,
                headers=signed(body, b"jp-admin-secret", "example.myshopify.com", "c"),
            )
            usual = await client.post(
                url, content=body, headers=signed(body, b"hush", "example.myshopify.com", "d")
            )
    finally:
        await runner.cleanup()
    assert [r.status_code for r in (own, app, cross, usual)] == [200, 401, 401, 200]
    stores = [e.store_id for batch in recorder.batches for e in batch]
    assert stores == ["shopify-jp-1", "shopify-us-1"]


def test_an_order_first_seen_updated_counts_on_the_day_it_was_created() -> None:
    from datetime import datetime

    from rules.load import RuleSet
    from streams.embedded import Engine, reader
    from streams.query import kpi_rows

    # Created late on the 19th (New York), first delivered by orders/updated on the 20th.
    late = order(created_at="2026-11-19T23:30:00-05:00", updated_at="2026-11-20T10:00:00-05:00")
    [event] = events_for("orders/updated", late, SHOP, "t")
    engine = Engine(RuleSet([]))
    engine.process_events([event])
    at = datetime.fromisoformat("2026-11-19T23:59:00-05:00")
    [row] = kpi_rows(reader(engine.state), "store", "1d", at)
    assert row["values"]["orders"] == "1"
    assert row["window_start"].startswith("2026-11-19")


def test_gift_card_lines_are_not_sales() -> None:
    card = {"id": 9, "variant_id": 9, "sku": "GIFT-50", "quantity": 1, "price": "50.00",
            "gift_card": True}  # fmt: skip
    [event] = events_for(
        "orders/create", order(line_items=[*order()["line_items"], card]), SHOP, "t"
    )
    assert isinstance(event, OrderEvent)
    assert "GIFT-50" not in [line.sku for line in event.lines]


def _shop(**changes: Any) -> dict[str, Any]:
    return {"example.myshopify.com": {"store_id": "s", "marketplace": "US", **changes}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Every stock update would be dead-lettered: our events know fba, 3pl and own.
        ({"shops": _shop(warehouse="shop")}, "warehouse"),
        ({"shops": {"https://example.myshopify.com": _shop()["example.myshopify.com"]}}, "pattern"),
        ({"shops": _shop(inventory_skus={"SKU-1": "x"})}, "pattern"),
        ({"secret": None}, "no secret for shop(s) example.myshopify.com"),
        ({"shop_secrets": {"nobody.myshopify.com": "x"}}, "shop_secrets: no shop nobody"),
    ],
)
def test_config_mistakes_are_refused(change: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    data: dict[str, Any] = {
        "secret": "hush",
        "shops": {"example.myshopify.com": {"store_id": "s", "marketplace": "US"}},
        **change,
    }
    with pytest.raises(ValidationError) as caught:
        ShopifyConfig.model_validate(data)
    assert message in str(caught.value)
