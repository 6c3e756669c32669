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
