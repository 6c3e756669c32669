"""Shopee Open Platform v2: signed requests, access-token refresh, orders by update time in
15-day windows with cursor paging plus their details, product stock per SKU, and the push
(webhook) receiver for order status changes.

Facts relied on, from the Open Platform v2 docs (open.shopee.com, read through copies found with
the search tool: the guides "Push Mechanism notifications" and "Stock & price management" as
processed in github.com/lazykern/ecommerce-api-docs data/processed/shopee/guides/, the push
pages copied verbatim in public repositories, and a field-by-field survey of the product API
reference; page names are given so they can be re-checked):
- Every shop-level call carries partner_id, timestamp, access_token, shop_id and sign = hex
  HMAC-SHA256(partner key, partner_id + api path + timestamp + access_token + shop_id) in the
  query; public calls (token refresh) sign partner_id + path + timestamp. Responses are
  `{"error": "", "message": "", "request_id": ..., "response": {...}}`.
- get_order_list takes time_range_field/time_from/time_to (at most 15 days apart), page_size
  and cursor and answers more/next_cursor/order_list; get_order_detail takes up to 50 order_sn.
- v2.product.get_item_list: offset, page_size (1..100), item_status (required: NORMAL, UNLIST,
  ...), optional update_time_from/to; answers item[{item_id, item_status, update_time}],
  total_count, has_next_page, next_offset. v2.product.get_item_base_info: item_id_list (at
  most 50); each item has item_id, item_sku, update_time, has_model and, without models,
  stock_info_v2. v2.product.get_model_list: one item_id; answers model[{model_id, model_sku,
  stock_info_v2, ...}]. "If a product has variants, use get_model_list to get the stock".
- stock_info_v2 = {summary_info: {total_reserved_stock ("stock reserved for promotion"),
  total_available_stock ("stock can be sold currently")}, seller_stock[{location_id, stock,
  if_saleable}], shopee_stock[{location_id, stock}]}. The guide's example has seller 90 +
  Shopee 99 + 200 = total_available_stock 389, so the per-location figures add up to the
  available total. shopee_stock is stock in Shopee's own warehouses (Fulfilled by Shopee;
  sellers cannot update it). shopee_stock[].stock is typed string in get_model_list and int in
  get_item_base_info: we accept both. No rate limit is published for these product calls.
- Push Mechanism: Shopee POSTs `{"data": {...}, "shop_id", "code", "timestamp"}` to the
  callback URL; the Authorization header is hex HMAC-SHA256(partner key, callback URL + "|" +
  raw body). A push counts as delivered only on a 2xx with an empty body within the timeout;
  otherwise it is retried, and an app whose success rate drops below 30% (over more than 600
  pushes in 6 hours) has its subscription disabled. order_status_push is code 3 with data
  {ordersn, status, completed_scenario, update_time}; "Time Out Seconds 3s", retries after
  300s, 1800s and 10800s, order not guaranteed, the same message may come more than once.
Prices are JSON numbers: we read them as Decimal, never float.

Our choices: Shopee-warehouse stock is warehouse kind "fba" (the marketplace holds and ships
it, as Amazon FBA; TikTok's Fulfilled-by-TikTok stock is "fba" too) and seller stock is "own";
promotion-reserved stock goes on the seller's event. A stock pass lists NORMAL items in full
every time (a snapshot; update_time_from would miss nothing only if every stock change moved
update_time, which we could not verify). A push for a shop we do not know, or a code we do not
use, is answered 200: a non-2xx answer could not be cured by a retry and would count against the
success rate that keeps the subscription alive; polling stays the source of truth.
Not verified: whether seller_stock already includes the promotion-reserved units; whether the
console's callback-URL check is signed; whether some consoles show a separate push key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Final, Literal

import httpx
from aiohttp import web
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.api import Throttle, read_json, scrub
from connectors.base import EventSink, FeedRef, Page, RejectSink, SourceError, each_alone
from connectors.building import Built, Context, Section, one_token_per_store, rotating_token
from connectors.push import PushReceiver, reject
from rules.errors import InvalidEventError
from rules.fileconfig import SecretSource
from streams.events import InventoryEvent, OrderEvent, OrderStatus, describe

log = logging.getLogger(__name__)

TOKEN_PATH: Final = "/api/v2/auth/access_token/get"  # noqa: S105 - a path
ORDER_LIST_PATH: Final = "/api/v2/order/get_order_list"
ORDER_DETAIL_PATH: Final = "/api/v2/order/get_order_detail"
ITEM_LIST_PATH: Final = "/api/v2/product/get_item_list"
ITEM_INFO_PATH: Final = "/api/v2/product/get_item_base_info"
MODEL_LIST_PATH: Final = "/api/v2/product/get_model_list"
WINDOW: Final = timedelta(days=15)
# An API host as the config file must give it: a scheme, a host name, no path.
HOST: Final = r"^https?://[A-Za-z0-9.-]+(:\d+)?$"
PAGE_SIZE: Final = 50  # get_order_detail's limit, so one list page is one detail call
ITEM_PAGE_SIZE: Final = 50  # get_item_base_info's limit, so one list page is one info call
TOKEN_MARGIN: Final = 300.0
# Shopee names an expired or wrong access token in `error` (its own docs spell one of them
# with a double e).
TOKEN_ERRORS: Final = frozenset({"invalid_access_token", "invalid_acceess_token", "error_auth"})
# Errors about the shop or the app, not one request: never a reason to skip a record.
SHOP_ERRORS: Final = TOKEN_ERRORS | {"error_permission", "error_shop", "error_server", "error_busy"}

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


Warehouse = Literal["fba", "3pl", "own"]
SHOPEE_WAREHOUSE: Final[Warehouse] = "fba"  # shopee_stock: Fulfilled by Shopee
SELLER_WAREHOUSE: Final[Warehouse] = "own"  # seller_stock
ORDER_STATUS_PUSH: Final = 3
PUSH_TIMEOUT: Final = 3.0  # seconds Shopee waits for our answer to a push


class ShopeeShop(BaseModel):
    """One shop: our store_id, Shopee's shop_id, and its region (the ISO country of its
    marketplace, e.g. MY), which inventory events need; orders carry their own region."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(min_length=1)
    shop_id: int = Field(gt=0)
    region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class ShopeeConfig(BaseModel):
    """The non-secret settings of a Shopee connector. Secrets (the partner key and each shop's
    refresh token) are handed to the constructors, never kept here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner_id: int = Field(gt=0)
    host: str = Field(default="https://partner.shopeemobile.com", pattern=HOST)
    shops: list[ShopeeShop] = Field(min_length=1)
    # Where the orders feed starts on its first pass.
    start: AwareDatetime
    stock: bool = False
    # Exactly as registered in the console: it is part of what Shopee signs. None: no pushes.
    callback_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+(/\S*)?$")
    # The local path if a proxy rewrites it; by default the callback URL's path.
    push_path: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ShopeeConfig:
        ids = [shop.shop_id for shop in self.shops]
        if len(set(ids)) != len(ids):
            raise ValueError("two shops have the same shop_id")
        stores = [shop.store_id for shop in self.shops]
        if len(set(stores)) != len(stores):
            raise ValueError("two shops have the same store_id")
        missing = [shop.store_id for shop in self.shops if shop.region is None]
        if self.stock and missing:
            raise ValueError(f"stock needs the region of every shop; missing for {missing}")
        return self


class ShopeeApiError(SourceError):
    """Shopee answered a call with an `error` (not a transport failure); `code` is that error."""

    def __init__(self, where: str, reason: str, code: str, status: int = 200) -> None:
        super().__init__(where, reason)
        self.code = code
        self.status = status

    @property
    def refused(self) -> bool:
        """A refusal of this request (a parameter, an order), not Shopee failing or the shop
        not being ours to read (those fail the pass, whatever records it holds)."""
        return self.status < 500 and self.code not in SHOP_ERRORS


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
    # One refresh at a time: Shopee rotates the refresh token, so two concurrent refreshes
    # (a poll and a push) would spend the same token and one of them would fail.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The `response` object of a successful call; a token error refreshes once."""
        for _ in range(2):
            token = await self._access_token()
            response = await self._call(path, params, token)
            body = read_json(response, path)
            if body.get("error") not in TOKEN_ERRORS:
                break
            self._forget(token)
        # The access token is in the query: an error may quote it back.
        return _result(body, path, response.status_code, (token, self.partner_key))

    def _forget(self, token: str) -> None:
        # Another caller may have refreshed meanwhile: drop only the token that failed.
        if self._token is not None and self._token.get_secret_value() == token:
            self._token = None

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
        async with self._lock:
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
            reason = scrub(reason, (self.refresh_token, self.partner_key))
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


def _result(
    body: dict[str, Any], path: str, status: int, hide: Sequence[SecretStr | str] = ()
) -> dict[str, Any]:
    if body.get("error") or status != 200:
        reason = f"{body.get('error')}: {body.get('message')} (request_id {body.get('request_id')})"
        reason = scrub(reason, hide)
        code = str(body.get("error") or status)
        raise ShopeeApiError(path, f"HTTP {status}, {reason}", code, status)
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
        try:
            listing = await self.api.get(ORDER_LIST_PATH, _list_params(state))
        except ShopeeApiError as exc:
            if not state.cursor or not exc.refused:
                raise
            # A saved page cursor goes stale (a restart long after): read the window again
            # from its start; its orders repeat with the same ids, which count once.
            log.warning("%s: cursor refused (%s); reading the window again", where, exc)
            state = state.model_copy(update={"cursor": ""})
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
        return await order_details(self.api, numbers, where)


async def order_details(
    api: ShopeeApi, numbers: list[str], where: str
) -> tuple[list[OrderEvent], list[InvalidEventError]]:
    """get_order_detail for up to 50 order_sn, as events and the orders that would not map.
    If Shopee refuses the batch, each order is asked for on its own: one order it will not
    give (a bad order_sn, one of another shop) is dead-lettered with the reason, and never
    holds back the orders after it. If it refuses every order, the pass fails."""
    if not numbers:
        return [], []
    found, refused = await each_alone(
        numbers, partial(_detail, api), ShopeeApiError, "order", where
    )
    events: list[OrderEvent] = []
    rejected: list[InvalidEventError] = list(refused)
    for index, order in enumerate(found):
        try:
            events.append(order_event(order, api.shop, f"{where} order {index}"))
        except InvalidEventError as exc:
            rejected.append(exc)
    return events, rejected


async def _detail(api: ShopeeApi, numbers: list[str]) -> list[Any]:
    params = {"order_sn_list": ",".join(numbers), "response_optional_fields": "item_list"}
    detail = await api.get(ORDER_DETAIL_PATH, params)
    orders = detail.get("order_list") or []
    return orders if isinstance(orders, list) else []


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
                # In the hour it was created, even when first read after a later update.
                "placed_at": _when(order.get("create_time")),
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


def sku_of(item_id: Any, model_id: Any, model_sku: Any, item_sku: Any) -> str:
    """The SKU an order line and a stock figure share: model_sku; for an item without models
    (model_id 0) item_sku; else item_id:model_id. A model never takes its item's item_sku,
    which all models of the item share."""
    if model_sku:
        return str(model_sku)
    if not model_id and item_sku:
        return str(item_sku)
    return f"{item_id}:{model_id or 0}"


def _line(item: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    if item.get("item_id") is None:
        raise KeyError("item_id")
    return {
        "sku": sku_of(
            item["item_id"], item.get("model_id"), item.get("model_sku"), item.get("item_sku")
        ),
        "quantity": item.get("model_quantity_purchased"),
        # A Decimal from read_json, or an int: never a float.
        "unit_price": {
            "amount": item.get("model_discounted_price"),
            "currency": order.get("currency"),
        },
    }


# --- Product stock ------------------------------------------------------------------------


class _StockCursor(BaseModel):
    """Where the item listing stands: the get_item_list offset of the next page."""

    offset: int = Field(default=0, ge=0)


@dataclass
class ShopeeStockSource:
    """Stock of every NORMAL item, one get_item_list page at a time, as InventoryEvents per
    SKU and warehouse kind. A finished listing saves offset 0, so the next pass is a new full
    snapshot; a pass stopped midway resumes at the page after the last one handed off."""

    api: ShopeeApi
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        if self.api.shop.region is None:
            raise ValueError(f"shop {self.api.shop.store_id} needs a region for stock events")

    @property
    def name(self) -> str:
        return f"shopee:stock:{self.api.shop.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        offset = _StockCursor.model_validate_json(cursor).offset if cursor else 0
        as_of = self.now()
        number = 0
        while True:
            number += 1
            page, following = await self._page(offset, number, as_of)
            yield page
            if following is None:
                return
            offset = following

    async def _page(self, offset: int, number: int, as_of: datetime) -> tuple[Page, int | None]:
        where = f"{self.name} get_item_list page {number} (offset {offset})"
        params = {"offset": str(offset), "page_size": str(ITEM_PAGE_SIZE), "item_status": "NORMAL"}
        listing = await self.api.get(ITEM_LIST_PATH, params)
        items = listing.get("item", [])  # an empty shop may leave the list out
        if not isinstance(items, list):
            raise SourceError(where, "response has no item list")
        ids, rejected = _item_ids(items, where)
        events, more = await self._stock(ids, where, as_of)
        following = _next_offset(listing, offset, where)
        cursor = _StockCursor(offset=following or 0).model_dump_json()
        return Page(events, cursor, [*rejected, *more]), following

    async def _stock(
        self, ids: list[int], where: str, as_of: datetime
    ) -> tuple[list[InventoryEvent], list[InvalidEventError]]:
        if not ids:
            return [], []
        info = await self.api.get(ITEM_INFO_PATH, {"item_id_list": ",".join(map(str, ids))})
        events: list[InventoryEvent] = []
        rejected: list[InvalidEventError] = []
        for item in info.get("item_list") or []:
            found, bad = await self._item(item, where, as_of)
            events.extend(found)
            rejected.extend(bad)
        return events, rejected

    async def _item(
        self, item: Any, where: str, as_of: datetime
    ) -> tuple[list[InventoryEvent], list[InvalidEventError]]:
        if not isinstance(item, dict) or not isinstance(item.get("item_id"), int):
            return [], [InvalidEventError(f"{where} item ?", "entry without an integer item_id")]
        source = f"{where} item {item['item_id']}"
        if not item.get("has_model"):
            return _mapped([(item, source)], item, self.api.shop, as_of)
        try:
            models = await self.api.get(MODEL_LIST_PATH, {"item_id": str(item["item_id"])})
        except ShopeeApiError as exc:
            if exc.code in TOKEN_ERRORS:
                raise
            # One item Shopee will not describe must not hold up the shop's other items.
            return [], [InvalidEventError(source, f"get_model_list failed: {exc.reason}")]
        entries = models.get("model")
        if not isinstance(entries, list):
            return [], [InvalidEventError(source, "get_model_list answered no model list")]
        named = [(model, f"{source} model {_model_id(model)}") for model in entries]
        return _mapped(named, item, self.api.shop, as_of)


def _item_ids(items: list[Any], where: str) -> tuple[list[int], list[InvalidEventError]]:
    ids: list[int] = []
    rejected: list[InvalidEventError] = []
    for index, entry in enumerate(items):
        item_id = entry.get("item_id") if isinstance(entry, dict) else None
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            ids.append(item_id)
        else:
            rejected.append(InvalidEventError(f"{where} entry {index}", "no integer item_id"))
    return ids, rejected


def _next_offset(listing: dict[str, Any], offset: int, where: str) -> int | None:
    if not listing.get("has_next_page"):
        return None
    following = listing.get("next_offset")
    # A next_offset that does not move forward would page the same items forever.
    if not isinstance(following, int) or following <= offset:
        raise SourceError(where, f"has_next_page with next_offset {following!r}")
    return following


def _model_id(model: Any) -> Any:
    return model.get("model_id", "?") if isinstance(model, dict) else "?"


def _mapped(
    records: list[tuple[Any, str]], item: dict[str, Any], shop: ShopeeShop, as_of: datetime
) -> tuple[list[InventoryEvent], list[InvalidEventError]]:
    events: list[InventoryEvent] = []
    rejected: list[InvalidEventError] = []
    for record, source in records:
        try:
            events.extend(stock_events(record, item, shop, source, as_of))
        except InvalidEventError as exc:
            rejected.append(exc)
    return events, rejected


def stock_events(
    record: Any, item: dict[str, Any], shop: ShopeeShop, source: str, as_of: datetime
) -> list[InventoryEvent]:
    """`record` is `item` itself (no models) or one of its models: an event per warehouse kind
    that holds it. event_id = shop, item, model, kind, the figures and the item's update_time,
    so a replayed page gives the same ids and any change of stock a new one."""
    if not isinstance(record, dict):
        raise InvalidEventError(source, "model entry is not an object")
    model_id = 0 if record is item else record.get("model_id")
    if not isinstance(model_id, int):
        raise InvalidEventError(source, "model without an integer model_id")
    stock = record.get("stock_info_v2")
    if not isinstance(stock, dict):
        raise InvalidEventError(source, "no stock_info_v2")
    try:
        figures = _figures(stock)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise InvalidEventError(source, f"malformed stock_info_v2: {exc}") from exc
    sku = sku_of(item["item_id"], model_id, record.get("model_sku"), item.get("item_sku"))
    stamp = f"{shop.shop_id}:{item['item_id']}:{model_id}"
    try:
        return [
            InventoryEvent.model_validate(
                {
                    "event_id": f"shopee:stock:{stamp}:{kind}:{available}:{reserved}:"
                    f"{item.get('update_time')}",
                    "occurred_at": as_of,
                    "platform": "shopee",
                    "marketplace": shop.region,
                    "store_id": shop.store_id,
                    "sku": sku,
                    "warehouse": kind,
                    "available": available,
                    "reserved": reserved,
                    "as_of": as_of,
                }
            )
            for kind, available, reserved in figures
        ]
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc


def _figures(stock: dict[str, Any]) -> list[tuple[Warehouse, int, int]]:
    """(kind, available, reserved) per warehouse kind present. Shopee gives the promotion
    reserve only as a total; it goes with the seller's stock (promotions are the seller's)."""
    seller = _located(stock.get("seller_stock"))
    shopee = _located(stock.get("shopee_stock"))
    summary = stock.get("summary_info") or {}
    reserved = _count(summary.get("total_reserved_stock", 0))
    if seller is None and shopee is None:
        # No per-location lists: the summary is all Shopee tells.
        return [(SELLER_WAREHOUSE, _count(summary["total_available_stock"]), reserved)]
    figures: list[tuple[Warehouse, int, int]] = []
    if seller is not None:
        figures.append((SELLER_WAREHOUSE, seller, reserved))
        reserved = 0
    if shopee is not None:
        figures.append((SHOPEE_WAREHOUSE, shopee, reserved))
    return figures


def _located(entries: Any) -> int | None:
    """The stock summed over locations; None when there are none. A seller location that
    Shopee marks if_saleable false cannot be sold from, so it does not count."""
    if not entries:
        return None
    if not isinstance(entries, list):
        raise TypeError(f"expected a list of locations, got {type(entries).__name__}")
    return sum(_count(e["stock"]) for e in entries if e.get("if_saleable") is not False)


def _count(value: Any) -> int:
    # get_model_list types shopee_stock's stock as a string, get_item_base_info as an int.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"stock {value!r} is not a whole number")
    number = int(value)
    if number < 0:
        raise ValueError(f"negative stock {number}")
    return number


# --- Push Mechanism -----------------------------------------------------------------------


class ShopeePush(PushReceiver):
    """The push endpoint: POST `path`. An order status push (code 3) is turned into the
    order's current state by get_order_detail through the shop's ShopeeApi and handed to the
    sink before we answer 200; if that fails within `timeout` we answer 503 and Shopee's retry
    (after 5 minutes, 30 minutes, 3 hours) is what keeps the change from being lost. Other
    codes, unknown shops and records that cannot map are answered 200: retrying cannot help.

    `push_key` is the key Shopee signs pushes with: the docs say the app's partner key."""

    def __init__(
        self,
        callback_url: str,
        push_key: SecretStr,
        apis: Sequence[ShopeeApi],
        sink: EventSink,
        *,
        on_rejected: RejectSink | None = None,
        timeout: float = 2.5,
        remember: int = 100_000,
        path: str | None = None,
    ) -> None:
        if not 0 < timeout < PUSH_TIMEOUT:
            raise ValueError(f"timeout must be under Shopee's {PUSH_TIMEOUT:.0f}s, got {timeout}")
        super().__init__(path or httpx.URL(callback_url).path or "/", remember=remember)
        self._url, self._key = callback_url, push_key
        self._apis = {api.shop.shop_id: api for api in apis}
        self._sink, self._on_rejected, self._timeout = sink, on_rejected, timeout
        self.ignored = self.unknown_shops = 0

    @classmethod
    def from_config(
        cls,
        config: ShopeeConfig,
        push_key: SecretStr,
        apis: Sequence[ShopeeApi],
        sink: EventSink,
        *,
        on_rejected: RejectSink | None = None,
    ) -> ShopeePush:
        if config.callback_url is None:
            raise ValueError("the Shopee config has no callback_url")
        return cls(
            config.callback_url,
            push_key,
            apis,
            sink,
            on_rejected=on_rejected,
            path=config.push_path,
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_push(self._key, self._url, body, request.headers.get("Authorization")):
            return web.Response(status=401)
        try:
            push = _parse_push(body)
        except InvalidEventError as exc:
            await reject(self._on_rejected, exc)
            return _ok()
        if push.get("code") != ORDER_STATUS_PUSH:
            self.ignored += 1
            return _ok()
        return await self._order_push(push)

    async def _order_push(self, push: dict[str, Any]) -> web.Response:
        data, shop_id = push.get("data"), push.get("shop_id")
        if not isinstance(data, dict):
            data = {}
        order_sn = data.get("ordersn")
        if not isinstance(order_sn, str) or not isinstance(shop_id, int):
            await reject(
                self._on_rejected,
                InvalidEventError("shopee push", "code 3 without ordersn/shop_id"),
            )
            return _ok()
        # Shopee gives a push no id: the change itself (order, status, time) is the key.
        key = f"{shop_id}:{order_sn}:{data.get('status')}:{data.get('update_time')}"
        if self.repeated(key):
            return _ok()
        api = self._apis.get(shop_id)
        if api is None:
            log.error("shopee order push for unconfigured shop_id %s; ignored", shop_id)
            self.unknown_shops += 1
            return _ok()
        return await self.once(key, lambda: self._answer(api, order_sn))

    async def _answer(self, api: ShopeeApi, order_sn: str) -> web.Response:
        return _ok() if await self._deliver(api, order_sn) else web.Response(status=503)

    async def _deliver(self, api: ShopeeApi, order_sn: str) -> bool:
        where = f"shopee order_status_push shop {api.shop.shop_id}"
        try:
            async with asyncio.timeout(self._timeout):
                events, rejected = await order_details(api, [order_sn], where)
                if not events and not rejected:
                    raise SourceError(where, f"get_order_detail did not return {order_sn}")
                if events:
                    await self._sink(events)
        except Exception as exc:  # any failure means: let Shopee retry
            reason = str(exc) if isinstance(exc, SourceError) else type(exc).__name__
            log.error("%s order %s: hand-off failed (%s); answering 503", where, order_sn, reason)
            return False
        for error in rejected:
            await reject(self._on_rejected, error)
        return True


def _ok() -> web.Response:
    # Shopee counts a push as delivered only on a 2xx with an empty body.
    return web.Response(status=200)


def _parse_push(body: bytes) -> dict[str, Any]:
    try:
        push = json.loads(body, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError("shopee push", f"body is not JSON: {exc}") from exc
    if not isinstance(push, dict):
        raise InvalidEventError("shopee push", "body is not a JSON object")
    return push


async def serve_push(push: ShopeePush, host: str, port: int) -> web.AppRunner:
    """Start the endpoint; the caller stops it with `await runner.cleanup()`."""
    runner = web.AppRunner(push.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# --- The connect file's section and builder ------------------------------------------------


class ShopeeSection(ShopeeConfig, Section):
    partner_key: SecretSource
    # Keyed by store_id; seeds only: Shopee rotates them on every refresh, the newest is kept
    # in Redis.
    refresh_tokens: dict[str, SecretSource]

    _tokens = field_validator("refresh_tokens")(one_token_per_store)


async def build_shopee(section: ShopeeSection, context: Context) -> Built:
    """One ShopeeApi per shop, shared by its orders feed, its stock feed and the push receiver
    (one refresh at a time: a rotated token is spent once)."""
    built = Built()
    apis = []
    for shop in section.shops:
        seed = section.refresh_tokens[shop.store_id]
        token, keep = await rotating_token(context, f"shopee:{shop.store_id}", seed)
        api = ShopeeApi(
            context.client,
            section.partner_id,
            section.partner_key.get(),
            shop,
            token,
            host=section.host,
            on_refresh_token=keep,
        )
        apis.append(api)
        # Orders carry their own region; the shop's is needed to name the store's feeds.
        feeds = _shopee_feeds(shop.region, shop.store_id)
        built.add(ShopeeOrdersSource(api, section.start), feeds.get("orders"))
        if section.stock:
            built.add(ShopeeStockSource(api), feeds.get("inventory"))
    if section.callback_url is not None:
        # Shopee signs pushes with the partner key.
        push = ShopeePush.from_config(
            section,
            section.partner_key.get(),
            apis,
            context.push_sink,
            on_rejected=context.on_rejected,
        )
        built.receivers.append(push)
    return built


def _shopee_feeds(region: str | None, store_id: str) -> dict[str, FeedRef]:
    if region is None:
        return {}
    return {
        "orders": FeedRef("shopee", region, store_id, "orders"),
        "inventory": FeedRef("shopee", region, store_id, "inventory"),
    }
