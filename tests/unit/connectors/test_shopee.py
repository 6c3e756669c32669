"""Shopee Open Platform v2: signatures against independently computed vectors, and orders in
15-day windows with cursor paging, token refresh and rotation, 429s and a malformed order."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr
from unit.connectors.fakes import Reply, Sleeps, _json

from connectors.api import Backoff, Throttle
from connectors.base import run_source
from connectors.checkpoint import MemoryCheckpoints
from connectors.shopee import ShopeeApi, ShopeeOrdersSource, ShopeeShop, sign, verify_push
from streams.events import Event, OrderEvent

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
