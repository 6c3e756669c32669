"""Shopee Open Platform v2: signed requests, access-token refresh, orders by update time in
15-day windows with cursor paging plus their details, and push notification verification.

Facts from the Open Platform v2 docs: every shop-level call carries partner_id, timestamp,
access_token, shop_id and sign = hex HMAC-SHA256(partner key, partner_id + api path + timestamp
+ access_token + shop_id) in the query; public calls (token refresh) sign partner_id + path +
timestamp. Responses are `{"error": "", "message": "", "request_id": ..., "response": {...}}`.
get_order_list takes time_range_field/time_from/time_to (at most 15 days apart), page_size and
cursor and answers more/next_cursor/order_list; get_order_detail takes up to 50 order_sn.
A push's Authorization header is hex HMAC-SHA256(partner key, callback URL + "|" + raw body).
Prices are JSON numbers: we read them as Decimal, never float.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from connectors.api import Throttle, read_json
from connectors.base import Page, SourceError
from rules.errors import InvalidEventError
from streams.events import OrderEvent, OrderStatus, describe

TOKEN_PATH: Final = "/api/v2/auth/access_token/get"  # noqa: S105 - a path
ORDER_LIST_PATH: Final = "/api/v2/order/get_order_list"
ORDER_DETAIL_PATH: Final = "/api/v2/order/get_order_detail"
WINDOW: Final = timedelta(days=15)
PAGE_SIZE: Final = 50  # get_order_detail's limit, so one list page is one detail call
TOKEN_MARGIN: Final = 300.0
# Shopee names an expired or wrong access token in `error` (its own docs spell one of them
# with a double e).
TOKEN_ERRORS: Final = frozenset({"invalid_access_token", "invalid_acceess_token", "error_auth"})

STATUSES: Final[dict[str, OrderStatus]] = {
    "UNPAID": "placed",
    "PENDING": "placed",
    "READY_TO_SHIP": "placed",
    "PROCESSED": "placed",
    "RETRY_SHIP": "placed",
    "IN_CANCEL": "placed",  # a cancellation request, not yet granted
    "INVOICE_PENDING": "placed",
    "SHIPPED": "shipped",
    "TO_CONFIRM_RECEIVE": "shipped",
    "COMPLETED": "delivered",
    "TO_RETURN": "returned",
    "CANCELLED": "cancelled",
}


def sign(key: SecretStr, *parts: str | int) -> str:
    """hex HMAC-SHA256 over the parts concatenated (partner_id, path, timestamp[, token, shop])."""
    base = "".join(str(part) for part in parts).encode()
    return hmac.new(key.get_secret_value().encode(), base, hashlib.sha256).hexdigest()


def verify_push(key: SecretStr, url: str, body: bytes, authorization: str | None) -> bool:
    """A push notification is Shopee's if Authorization = hex HMAC(key, url + '|' + body)."""
    if not authorization:
        return False
    expected = hmac.new(key.get_secret_value().encode(), url.encode() + b"|" + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest().encode(), authorization.strip().encode())


class ShopeeShop(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str
    shop_id: int


@dataclass
class ShopeeApi:
    """Signed calls for one shop. Shopee rotates the refresh token on every refresh:
    `on_refresh_token` is where the caller persists the new one (a secret store, not logs)."""

    client: httpx.AsyncClient
    partner_id: int
    partner_key: SecretStr
    shop: ShopeeShop
    refresh_token: SecretStr
    host: str = "https://partner.shopeemobile.com"
    on_refresh_token: Callable[[SecretStr], Awaitable[None]] | None = None
    clock: Callable[[], float] = time.time
    throttle: Throttle = field(default_factory=lambda: Throttle("shopee"))
    refreshes: int = 0
    _token: SecretStr | None = None
    _expires: float = 0.0

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The `response` object of a successful call; a token error refreshes once."""
        for _ in range(2):
            response = await self._call(path, params, await self._access_token())
            body = read_json(response, path)
            if body.get("error") not in TOKEN_ERRORS:
                break
            self._token = None
        return _result(body, path, response.status_code)

    async def _call(self, path: str, params: dict[str, str], token: str) -> httpx.Response:
        # Built afresh per attempt: the signature covers the timestamp.
        return await self.throttle.send(
            self.client, lambda: self._signed("GET", path, params, token)
        )

    def _signed(self, method: str, path: str, params: dict[str, str], token: str) -> httpx.Request:
        now = int(self.clock())
        shop_id = self.shop.shop_id
        query = {
            **params,
            "partner_id": str(self.partner_id),
            "timestamp": str(now),
            "access_token": token,
            "shop_id": str(shop_id),
            "sign": sign(self.partner_key, self.partner_id, path, now, token, shop_id),
        }
        return self.client.build_request(method, self.host + path, params=query)

    async def _access_token(self) -> str:
        if self._token is None or self.clock() >= self._expires - TOKEN_MARGIN:
            await self._refresh()
        if self._token is None:  # pragma: no cover - _refresh sets it or raises
            raise SourceError("shopee token refresh", "no access token")
        return self._token.get_secret_value()

    async def _refresh(self) -> None:
        body = {
            "refresh_token": self.refresh_token.get_secret_value(),
            "partner_id": self.partner_id,
            "shop_id": self.shop.shop_id,
        }
        response = await self.throttle.send(self.client, lambda: self._public(TOKEN_PATH, body))
        data = read_json(response, "shopee token refresh")
        if data.get("error") or not isinstance(data.get("access_token"), str):
            reason = f"{data.get('error')}: {data.get('message')}"
            raise SourceError("shopee token refresh", f"HTTP {response.status_code}, {reason}")
        self._token = SecretStr(data["access_token"])
        self._expires = self.clock() + float(data.get("expire_in", 14400))
        self.refreshes += 1
        if isinstance(data.get("refresh_token"), str):
            self.refresh_token = SecretStr(data["refresh_token"])
            if self.on_refresh_token is not None:
                await self.on_refresh_token(self.refresh_token)

    def _public(self, path: str, body: dict[str, Any]) -> httpx.Request:
        now = int(self.clock())
        query = {
            "partner_id": str(self.partner_id),
            "timestamp": str(now),
            "sign": sign(self.partner_key, self.partner_id, path, now),
        }
        return self.client.build_request("POST", self.host + path, params=query, json=body)


def _result(body: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    if body.get("error") or status != 200:
        reason = f"{body.get('error')}: {body.get('message')} (request_id {body.get('request_id')})"
        raise SourceError(path, f"HTTP {status}, {reason}")
    response = body.get("response")
    if not isinstance(response, dict):
        raise SourceError(path, "answer has no response object")
    return response


class _Cursor(BaseModel):
    """The update-time window [time_from, time_to] in epoch seconds and the page cursor in it."""

    time_from: int
    time_to: int | None = None
    cursor: str = ""


@dataclass
class ShopeeOrdersSource:
    """Orders changed since the checkpoint, window by window (Shopee allows 15 days per call)."""

    api: ShopeeApi
    start: datetime
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def name(self) -> str:
        return f"shopee:orders:{self.api.shop.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = (
            _Cursor.model_validate_json(cursor)
            if cursor
            else _Cursor(time_from=int(self.start.timestamp()))
        )
        until = int(self.now().timestamp())
        number = 0
        while True:
            if state.time_to is None:
                end = min(state.time_from + int(WINDOW.total_seconds()), until)
                state = state.model_copy(update={"time_to": end})
            number += 1
            page, state, done = await self._page(state, number, until)
            yield page
            if done:
                return

    async def _page(self, state: _Cursor, number: int, until: int) -> tuple[Page, _Cursor, bool]:
        where = f"{self.name} get_order_list page {number} (from {state.time_from})"
        listing = await self.api.get(ORDER_LIST_PATH, _list_params(state))
        orders = listing.get("order_list")
        if not isinstance(orders, list):
            raise SourceError(where, "response has no order_list")
        numbers = [o.get("order_sn") for o in orders if isinstance(o, dict)]
        events, rejected = await self._details([n for n in numbers if isinstance(n, str)], where)
        if listing.get("more"):
            state = state.model_copy(update={"cursor": str(listing.get("next_cursor", ""))})
            return Page(events, state.model_dump_json(), rejected), state, False
        if state.time_to is None:  # pragma: no cover - pages() sets it
            raise ValueError("window without an end")
        state = _Cursor(time_from=state.time_to)
        return Page(events, state.model_dump_json(), rejected), state, state.time_from >= until

    async def _details(
        self, numbers: list[str], where: str
    ) -> tuple[list[OrderEvent], list[InvalidEventError]]:
        if not numbers:
            return [], []
        params = {"order_sn_list": ",".join(numbers), "response_optional_fields": "item_list"}
        detail = await self.api.get(ORDER_DETAIL_PATH, params)
        events: list[OrderEvent] = []
        rejected: list[InvalidEventError] = []
        for index, order in enumerate(detail.get("order_list") or []):
            try:
                events.append(order_event(order, self.api.shop, f"{where} order {index}"))
            except InvalidEventError as exc:
                rejected.append(exc)
        return events, rejected


def _list_params(state: _Cursor) -> dict[str, str]:
    return {
        "time_range_field": "update_time",
        "time_from": str(state.time_from),
        "time_to": str(state.time_to),
        "page_size": str(PAGE_SIZE),
        "cursor": state.cursor,
    }


def _when(epoch: Any) -> datetime | None:
    if isinstance(epoch, int) and epoch > 0:
        return datetime.fromtimestamp(epoch, UTC)
    return None


def order_event(order: Any, shop: ShopeeShop, source: str) -> OrderEvent:
    """One get_order_detail order; event_id = order_sn + update_time."""
    if not isinstance(order, dict) or not isinstance(order.get("order_sn"), str):
        raise InvalidEventError(source, "order without an order_sn")
    source = f"{source} ({order['order_sn']})"
    status = STATUSES.get(str(order.get("order_status")))
    if status is None:
        raise InvalidEventError(source, f"unknown order_status {order.get('order_status')!r}")
    try:
        return OrderEvent.model_validate(
            {
                "event_id": f"shopee:{order['order_sn']}:{order.get('update_time')}",
                "occurred_at": _when(order.get("update_time")),
                "platform": "shopee",
                "marketplace": order.get("region"),
                "store_id": shop.store_id,
                "order_id": order["order_sn"],
                "status": status,
                "lines": [_line(item, order) for item in order.get("item_list") or []],
                "fulfillment_channel": "marketplace"
                if order.get("fulfillment_flag") == "fulfilled_by_shopee"
                else "merchant",
                "ship_by": _when(order.get("ship_by_date")),
            }
        )
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (TypeError, AttributeError, KeyError) as exc:
        raise InvalidEventError(source, f"malformed item_list: {exc}") from exc


def _line(item: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    sku = item.get("model_sku") or item.get("item_sku") or f"{item['item_id']}:{item['model_id']}"
    return {
        "sku": sku,
        "quantity": item.get("model_quantity_purchased"),
        # A Decimal from read_json, or an int: never a float.
        "unit_price": {
            "amount": item.get("model_discounted_price"),
            "currency": order.get("currency"),
        },
    }
