"""TikTok Shop Open API (version 202309): signed requests, access-token refresh, orders by
update time, inventory of configured products, and the ORDER_STATUS_CHANGE webhook receiver.

Facts relied on (TikTok Shop Partner Center, partner.tiktokshop.com/docv2, read through copies
of the pages found with the search tool; page names given so they can be re-checked):
- "Sign your API request": drop `sign` and `access_token` from the query, sort the other keys,
  concatenate `{key}{value}`, prefix the request path, append the exact body bytes unless the
  content type is multipart/form-data, wrap in app_secret on both sides, hex HMAC-SHA256 keyed
  by app_secret. From 202309 the access token travels in the `x-tts-access-token` header and
  is not signed. Published vector: app_secret e59af819cc, GET /authorization/202309/shops,
  app_key 29a39d, timestamp 1623812664 -> b596b73e...82dc8 (our tests check it). The timestamp
  must be a 10-digit epoch within 5 minutes of TikTok's clock.
- "Authorization overview": GET {auth host}/api/v2/token/refresh?app_key&app_secret
  &refresh_token&grant_type=refresh_token answers `{code, message, data: {access_token,
  access_token_expire_in, refresh_token, refresh_token_expire_in, ...}}`; both *_expire_in are
  absolute Unix timestamps (not durations); an access token lives seven days.
- Official Node SDK models (Order202309GetOrderListRequestBody, ...ResponseDataOrders,
  ...LineItems, OrderV202309Api.OrdersSearchPost): POST /order/202309/orders/search takes
  page_size, sort_order, page_token, sort_field, shop_cipher in the query and update_time_ge /
  update_time_lt (epoch seconds) in the JSON body; data holds `orders` and `next_page_token`.
  An order has id, status (UNPAID, ON_HOLD, AWAITING_SHIPMENT, PARTIALLY_SHIPPING,
  AWAITING_COLLECTION, IN_TRANSIT, DELIVERED, COMPLETED, CANCELLED), update_time,
  fulfillment_type (FULFILLMENT_BY_SELLER / FULFILLMENT_BY_TIKTOK), rts_sla_time, rts_time,
  is_sample_order and line_items; a line item has no quantity field (one line item per unit),
  and carries sku_id, seller_sku, sale_price (a decimal string), currency, display_status.
  GET /order/202309/orders?ids= answers the same order shape.
- Product202309InventorySearch models: POST /product/202309/inventory/search with body
  {product_ids | sku_ids} answers data.inventory[{product_id, skus[{id, seller_sku,
  total_available_quantity, total_committed_quantity, warehouse_inventory[{warehouse_id,
  available_quantity, committed_quantity}]}]}]. It has no paging: we send configured product
  ids in batches of INVENTORY_BATCH (the documented maximum could not be verified).
- "Webhooks overview" and "(1) Order status change": the Authorization header is hex
  HMAC-SHA256(app_secret, app_key + raw body); published vector: app key abcdef, secret 123
  -> 5dec0f11...ac05 (our tests check it). The body is {type, tts_notification_id, shop_id,
  timestamp, data}; type 1 is ORDER_STATUS_CHANGE with data.order_id, order_status,
  update_time. Webhooks are at-least-once and not a source of truth on their own: keep polling.
- Errors: responses are {code, message, request_id, data}, code 0 is success. Only known
  second-hand (a summary of "Common errors" and "Rate limits", not read directly): 105002 =
  access token expired, 36009004 with a message naming access_token = invalid token, 36009002
  (and 36009037 on sandbox shops) = rate limited, HTTP 429 when throttled; QPS limits are
  dynamic per app, so no token bucket is set by default.

Our choices: a pass ends LAG before now (late-indexed updates), update-time windows of WINDOW;
event_id = order id + update_time; Fulfilled-by-TikTok stock is warehouse kind "fba" (the
marketplace holds it, as with Amazon FBA) and every other warehouse is "own"; sample orders are
`is_test` (free samples to creators are not sales).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final

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
from streams.events import Event, InventoryEvent, OrderEvent, OrderStatus, describe

log = logging.getLogger(__name__)

API_HOST: Final = "https://open-api.tiktokglobalshop.com"
AUTH_HOST: Final = "https://auth.tiktok-shops.com"
REFRESH_PATH: Final = "/api/v2/token/refresh"
ORDER_SEARCH_PATH: Final = "/order/202309/orders/search"
ORDER_DETAIL_PATH: Final = "/order/202309/orders"
INVENTORY_PATH: Final = "/product/202309/inventory/search"
PAGE_SIZE: Final = 50
INVENTORY_BATCH: Final = 20
WINDOW: Final = timedelta(days=7)
LAG: Final = timedelta(minutes=2)
# Refresh this long before access_token_expire_in, so no request leaves with a dying token.
TOKEN_MARGIN: Final = 600.0
TOKEN_EXPIRED: Final = 105002
INVALID_CREDENTIALS: Final = 36009004
RATE_LIMITED: Final = frozenset({36009002, 36009037})
ORDER_STATUS_CHANGE: Final = 1
# An API host as the config file must give it: https, a host name, no path.
HOST: Final = r"^https?://[A-Za-z0-9.-]+(:\d+)?$"
MAX_BODY: Final = 1024 * 1024

STATUSES: Final[dict[str, OrderStatus]] = {
    "UNPAID": "placed",
    "ON_HOLD": "placed",
    "AWAITING_SHIPMENT": "placed",
    "PARTIALLY_SHIPPING": "placed",
    "AWAITING_COLLECTION": "placed",  # a label exists; the carrier has not taken it yet
    "IN_TRANSIT": "shipped",
    "DELIVERED": "delivered",
    "COMPLETED": "delivered",
    "CANCELLED": "cancelled",
}


def sign(secret: SecretStr, path: str, query: Mapping[str, str], body: bytes = b"") -> str:
    """The `sign` query parameter of a 202309 request (see the module docstring)."""
    key = secret.get_secret_value().encode()
    pairs = "".join(k + query[k] for k in sorted(query) if k not in ("sign", "access_token"))
    message = key + path.encode() + pairs.encode() + body + key
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def webhook_signature(app_key: str, secret: SecretStr, body: bytes) -> str:
    """hex HMAC-SHA256(app_secret, app_key + raw body): TikTok's Authorization header."""
    key = secret.get_secret_value().encode()
    return hmac.new(key, app_key.encode() + body, hashlib.sha256).hexdigest()


def verify_webhook(app_key: str, secret: SecretStr, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    expected = webhook_signature(app_key, secret, body)
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


class TikTokShop(BaseModel):
    """One authorized shop. shop_id and shop_cipher come from Get Authorized Shops; shop_id is
    how webhooks name the shop. product_ids are the products whose stock we watch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(min_length=1)
    shop_id: str = Field(min_length=1)
    shop_cipher: str = Field(min_length=1)
    marketplace: str = Field(pattern=r"^[A-Z]{2}$")
    product_ids: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    # Warehouses run by Fulfilled by TikTok (Get Warehouse List); all others count as "own".
    fbt_warehouse_ids: list[str] = Field(default_factory=list)


class TikTokConfig(BaseModel):
    """Non-secret settings; app_secret and each shop's refresh token are handed in apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_key: str = Field(min_length=1)
    shops: list[TikTokShop] = Field(min_length=1)
    api_host: str = Field(default=API_HOST, pattern=HOST)
    auth_host: str = Field(default=AUTH_HOST, pattern=HOST)
    start: AwareDatetime

    @model_validator(mode="after")
    def _unique(self) -> TikTokConfig:
        for name in ("store_id", "shop_id"):
            values = [getattr(shop, name) for shop in self.shops]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"shops: {name} listed more than once: {', '.join(repeated)}")
        return self


@dataclass
class TikTokApi:
    """Signed calls for one shop. TikTok may hand out a new refresh token on refresh:
    `on_refresh_token` is where the caller persists it (a secret store, never logs)."""

    client: httpx.AsyncClient
    app_key: str
    app_secret: SecretStr
    shop: TikTokShop
    refresh_token: SecretStr
    api_host: str = API_HOST
    auth_host: str = AUTH_HOST
    on_refresh_token: Callable[[SecretStr], Awaitable[None]] | None = None
    clock: Callable[[], float] = time.time
    throttle: Throttle = field(default_factory=lambda: Throttle("tiktok"))
    refreshes: int = 0
    _token: SecretStr | None = None
    _expires: float = 0.0
    # The poller and the webhook receiver may share one shop's api: refresh once, not twice
    # (with a rotated refresh token, the second refresh would present a spent one).
    _refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def call(
        self, method: str, path: str, params: Mapping[str, str], body: Any = None
    ) -> dict[str, Any]:
        """The `data` object of a successful call; a token TikTok calls expired is refreshed
        once and the call repeated."""
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        for _ in range(2):
            response, envelope = await self._send_until_allowed(method, path, params, content)
            if not _token_rejected(envelope):
                break
            self._token = None
        return _data(envelope, path, response.status_code)

    async def _send_until_allowed(
        self, method: str, path: str, params: Mapping[str, str], content: bytes
    ) -> tuple[httpx.Response, dict[str, Any]]:
        # HTTP 429 is retried inside Throttle; a rate-limit code in a 200 envelope is here.
        backoff = self.throttle.backoff
        for attempt in range(backoff.attempts):
            token = await self._access_token()
            response = await self.throttle.send(
                self.client, functools.partial(self._signed, method, path, params, content, token)
            )
            envelope = read_json(response, f"tiktok {path}")
            if envelope.get("code") not in RATE_LIMITED:
                return response, envelope
            delay = backoff.delay(attempt)
            log.info(
                "tiktok %s: rate limited (code %s), retrying in %.1fs",
                path,
                envelope.get("code"),
                delay,
            )
            self.throttle.waits.append(delay)
            await self.throttle.sleep(delay)
        raise SourceError(f"tiktok {path}", f"rate limited after {backoff.attempts} attempts")

    def _signed(
        self, method: str, path: str, params: Mapping[str, str], content: bytes, token: str
    ) -> httpx.Request:
        query = {
            **params,
            "app_key": self.app_key,
            "shop_cipher": self.shop.shop_cipher,
            "timestamp": str(int(self.clock())),
        }
        query["sign"] = sign(self.app_secret, path, query, content)
        headers = {"x-tts-access-token": token, "content-type": "application/json"}
        return self.client.build_request(
            method, self.api_host + path, params=query, headers=headers, content=content or None
        )

    async def _access_token(self) -> str:
        async with self._refreshing:
            if self._token is None or self.clock() >= self._expires - TOKEN_MARGIN:
                await self._refresh()
        if self._token is None:  # pragma: no cover - _refresh sets it or raises
            raise SourceError("tiktok token refresh", "no access token")
        return self._token.get_secret_value()

    async def _refresh(self) -> None:
        where = f"tiktok token refresh ({self.shop.store_id})"
        response = await self.throttle.send(self.client, self._refresh_request)
        try:
            # The refresh sends app_secret and the refresh token in the query.
            hide = (self.app_secret, self.refresh_token)
            data = _data(read_json(response, where), where, response.status_code, hide)
        except TikTokApiError as exc:
            # The shop's credentials, not one request: never a reason to skip a record.
            raise SourceError(where, exc.reason) from exc
        token, expires = data.get("access_token"), data.get("access_token_expire_in")
        if not isinstance(token, str) or not isinstance(expires, int):
            raise SourceError(where, "answer has no access_token / access_token_expire_in")
        self._token, self._expires = SecretStr(token), float(expires)
        self.refreshes += 1
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated != self.refresh_token.get_secret_value():
            self.refresh_token = SecretStr(rotated)
            if self.on_refresh_token is not None:
                await self.on_refresh_token(self.refresh_token)

    def _refresh_request(self) -> httpx.Request:
        # The auth host wants app_secret in the query (documented); install_redaction keeps
        # it out of httpx's log lines and we never log this URL ourselves.
        query = {
            "app_key": self.app_key,
            "app_secret": self.app_secret.get_secret_value(),
            "refresh_token": self.refresh_token.get_secret_value(),
            "grant_type": "refresh_token",
        }
        return self.client.build_request("GET", self.auth_host + REFRESH_PATH, params=query)


def _token_rejected(envelope: dict[str, Any]) -> bool:
    code = envelope.get("code")
    if code == TOKEN_EXPIRED:
        return True
    return code == INVALID_CREDENTIALS and "access_token" in str(envelope.get("message"))


class TikTokApiError(SourceError):
    """TikTok refused a call (a non-zero code), as opposed to a transport failure."""

    def __init__(self, where: str, reason: str, code: Any, status: int) -> None:
        super().__init__(where, reason)
        self.code = code
        self.status = status

    @property
    def refused(self) -> bool:
        """A refusal of this request (a bad parameter, an unknown id), not TikTok failing or
        the shop's credentials."""
        return self.status < 500 and self.code not in (TOKEN_EXPIRED, INVALID_CREDENTIALS)


def _data(
    envelope: dict[str, Any], where: str, status: int, hide: Sequence[SecretStr] = ()
) -> dict[str, Any]:
    code = envelope.get("code")
    if code != 0 or status != 200:
        reason = f"code {code}: {envelope.get('message')} (request_id {envelope.get('request_id')})"
        reason = scrub(reason, hide)
        raise TikTokApiError(where, f"HTTP {status}, {reason}", code, status)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise SourceError(where, "answer has no data object")
    return data


# --- orders ---------------------------------------------------------------------------------


class _OrderCursor(BaseModel):
    """The update-time window [update_ge, update_lt) in epoch seconds and the page token in it."""

    update_ge: int
    update_lt: int | None = None
    page_token: str = ""


@dataclass
class TikTokOrdersSource:
    """Orders changed since the checkpoint, oldest update first, window by window."""

    api: TikTokApi
    start: datetime
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def name(self) -> str:
        return f"tiktok:orders:{self.api.shop.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = (
            _OrderCursor.model_validate_json(cursor)
            if cursor
            else _OrderCursor(update_ge=int(self.start.timestamp()))
        )
        until = int((self.now() - LAG).timestamp())
        number = 0
        while state.update_ge < until or state.update_lt is not None:
            if state.update_lt is None:
                end = min(state.update_ge + int(WINDOW.total_seconds()), until)
                state = state.model_copy(update={"update_lt": end})
            number += 1
            page, state = await self._page(state, number)
            yield page

    async def _page(self, state: _OrderCursor, number: int) -> tuple[Page, _OrderCursor]:
        where = f"{self.name} orders/search page {number} (from {state.update_ge})"
        try:
            data = await self._search(state)
        except TikTokApiError as exc:
            if not state.page_token or not exc.refused:
                raise
            # A saved page token goes stale (a restart hours later): without it the window
            # is read again from its start; its orders repeat with the same ids, counted once.
            log.warning("%s: page token refused (%s); reading the window again", where, exc)
            state = state.model_copy(update={"page_token": ""})
            data = await self._search(state)
        events, rejected = _map_orders(_orders_of(data, where), self.api.shop, where)
        token = data.get("next_page_token")
        if token:
            state = state.model_copy(update={"page_token": str(token)})
        else:
            state = _OrderCursor(update_ge=state.update_lt or state.update_ge)
        return Page(events, state.model_dump_json(), rejected), state

    async def _search(self, state: _OrderCursor) -> dict[str, Any]:
        return await self.api.call("POST", ORDER_SEARCH_PATH, _search_params(state), _window(state))


def _search_params(state: _OrderCursor) -> dict[str, str]:
    params = {"page_size": str(PAGE_SIZE), "sort_field": "update_time", "sort_order": "ASC"}
    if state.page_token:
        params["page_token"] = state.page_token
    return params


def _window(state: _OrderCursor) -> dict[str, int]:
    return {"update_time_ge": state.update_ge, "update_time_lt": state.update_lt or 0}


def _orders_of(data: dict[str, Any], where: str) -> list[Any]:
    orders = data.get("orders")
    if orders is None and not data.get("total_count") and not data.get("next_page_token"):
        return []  # an empty window may leave the list out
    if not isinstance(orders, list):
        raise SourceError(where, "data has no orders list")
    return orders


def _map_orders(
    orders: list[Any], shop: TikTokShop, where: str
) -> tuple[list[OrderEvent], list[InvalidEventError]]:
    events: list[OrderEvent] = []
    rejected: list[InvalidEventError] = []
    for index, order in enumerate(orders):
        try:
            events.append(order_event(order, shop, f"{where} order {index}"))
        except InvalidEventError as exc:
            rejected.append(exc)
    return events, rejected


def _when(epoch: Any) -> datetime | None:
    if isinstance(epoch, int) and epoch > 0:
        return datetime.fromtimestamp(epoch, UTC)
    return None


def order_event(order: Any, shop: TikTokShop, source: str) -> OrderEvent:
    """One 202309 order as its latest state; event_id = order id + update_time."""
    if not isinstance(order, dict) or not isinstance(order.get("id"), str):
        raise InvalidEventError(source, "order without an id")
    source = f"{source} ({order['id']})"
    status = STATUSES.get(str(order.get("status")))
    if status is None:
        raise InvalidEventError(source, f"unknown order status {order.get('status')!r}")
    try:
        return OrderEvent.model_validate(_order_fields(order, shop, status))
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (TypeError, AttributeError, KeyError) as exc:
        raise InvalidEventError(source, f"malformed line_items: {exc}") from exc


def _order_fields(order: dict[str, Any], shop: TikTokShop, status: OrderStatus) -> dict[str, Any]:
    by_tiktok = order.get("fulfillment_type") == "FULFILLMENT_BY_TIKTOK"
    return {
        "event_id": f"tiktok:{order['id']}:{order.get('update_time')}",
        "occurred_at": _when(order.get("update_time")),
        # In the hour it was created, even when first read after a later update.
        "placed_at": _when(order.get("create_time")),
        "platform": "tiktok",
        "marketplace": shop.marketplace,
        "store_id": shop.store_id,
        "order_id": order["id"],
        "status": status,
        "lines": _lines(order.get("line_items") or [], keep_cancelled=status == "cancelled"),
        "fulfillment_channel": "marketplace" if by_tiktok else "merchant",
        "ship_by": _when(order.get("rts_sla_time")),
        "shipped_at": _when(order.get("rts_time")),
        "is_test": order.get("is_sample_order") is True,
    }


def _lines(items: list[dict[str, Any]], *, keep_cancelled: bool) -> list[dict[str, Any]]:
    """One line item is one unit: units of a SKU at one price become one line. A unit that
    was cancelled while the rest of the order goes on is not a sale."""
    units: Counter[tuple[str, str, str]] = Counter()
    for item in items:
        if item.get("display_status") == "CANCELLED" and not keep_cancelled:
            continue
        if item.get("is_gift") is True:
            continue  # a free gift that came with the order: units, but no sale
        sku = item.get("seller_sku") or f"sku:{item['sku_id']}"
        units[(sku, str(item["sale_price"]), str(item.get("currency")))] += 1
    return [
        {"sku": sku, "quantity": n, "unit_price": {"amount": price, "currency": currency}}
        for (sku, price, currency), n in units.items()
    ]


# --- inventory ------------------------------------------------------------------------------


class _InventoryCursor(BaseModel):
    """The snapshot a pass is taking (its time) and the next batch of product ids in it."""

    as_of: int
    batch: int = 0


@dataclass
class TikTokInventorySource:
    """Stock of the shop's configured products, one snapshot per pass, per SKU and warehouse
    kind ("fba" for Fulfilled by TikTok warehouses, "own" for the rest)."""

    api: TikTokApi
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def name(self) -> str:
        return f"tiktok:inventory:{self.api.shop.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        ids = self.api.shop.product_ids
        batches = [ids[i : i + INVENTORY_BATCH] for i in range(0, len(ids), INVENTORY_BATCH)]
        state = _InventoryCursor.model_validate_json(cursor) if cursor else None
        if state is None or state.batch >= len(batches):
            state = _InventoryCursor(as_of=int(self.now().timestamp()))
        for number in range(state.batch, len(batches)):
            where = f"{self.name} inventory/search batch {number + 1}"
            inventory, refused = await self._inventory(batches[number], where)
            events, rejected = _map_inventory(inventory, self.api.shop, state.as_of, where)
            state = state.model_copy(update={"batch": number + 1})
            yield Page(events, state.model_dump_json(), [*refused, *rejected])

    async def _inventory(
        self, product_ids: list[str], where: str
    ) -> tuple[list[Any], list[InvalidEventError]]:
        """The batch's inventory; if TikTok refuses the batch, each product on its own, so one
        bad product id (deleted, not this shop's) is dead-lettered instead of stopping the
        feed at this batch for ever. If every product is refused, the shop is: the pass fails."""
        return await each_alone(
            product_ids,
            functools.partial(self._search_inventory, where=where),
            TikTokApiError,
            "product",
            where,
        )

    async def _search_inventory(self, product_ids: list[str], where: str) -> list[Any]:
        data = await self.api.call("POST", INVENTORY_PATH, {}, {"product_ids": product_ids})
        inventory = data.get("inventory")
        if not isinstance(inventory, list):
            raise SourceError(where, "data has no inventory list")
        return inventory


def _map_inventory(
    inventory: list[Any], shop: TikTokShop, as_of: int, where: str
) -> tuple[list[InventoryEvent], list[InvalidEventError]]:
    events: list[InventoryEvent] = []
    rejected: list[InvalidEventError] = []
    for product in inventory:
        skus = product.get("skus") if isinstance(product, dict) else None
        for index, sku in enumerate(skus if isinstance(skus, list) else [product]):
            try:
                events.extend(inventory_events(sku, shop, as_of, f"{where} sku {index}"))
            except InvalidEventError as exc:
                rejected.append(exc)
    return events, rejected


def inventory_events(sku: Any, shop: TikTokShop, as_of: int, source: str) -> list[InventoryEvent]:
    """One SKU's stock summed per warehouse kind; event_id = SKU id + kind + snapshot time."""
    if not isinstance(sku, dict) or not isinstance(sku.get("id"), str):
        raise InvalidEventError(source, "inventory entry without a SKU id")
    source = f"{source} ({sku['id']})"
    try:
        return [
            InventoryEvent.model_validate(_inventory_fields(sku, shop, as_of, kind, totals))
            for kind, totals in _by_kind(sku, shop).items()
        ]
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (TypeError, AttributeError) as exc:
        raise InvalidEventError(source, f"malformed warehouse_inventory: {exc}") from exc


def _by_kind(sku: dict[str, Any], shop: TikTokShop) -> dict[str, tuple[int, int]]:
    warehouses = sku.get("warehouse_inventory")
    if not warehouses:
        committed = sku.get("total_committed_quantity") or 0
        return {"own": (_count(sku.get("total_available_quantity")), _count(committed))}
    totals: dict[str, tuple[int, int]] = {}
    for entry in warehouses:
        kind = "fba" if entry.get("warehouse_id") in shop.fbt_warehouse_ids else "own"
        available, committed = totals.get(kind, (0, 0))
        totals[kind] = (
            available + _count(entry.get("available_quantity")),
            committed + _count(entry.get("committed_quantity") or 0),
        )
    return totals


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"quantity {value!r} is not an integer")
    return value


def _inventory_fields(
    sku: dict[str, Any], shop: TikTokShop, as_of: int, kind: str, totals: tuple[int, int]
) -> dict[str, Any]:
    when = datetime.fromtimestamp(as_of, UTC)
    return {
        "event_id": f"tiktok:inv:{shop.store_id}:{sku['id']}:{kind}:{as_of}",
        "occurred_at": when,
        "platform": "tiktok",
        "marketplace": shop.marketplace,
        "store_id": shop.store_id,
        "sku": sku.get("seller_sku") or f"sku:{sku['id']}",
        "warehouse": kind,
        "available": totals[0],
        "reserved": totals[1],
        "as_of": when,
    }


# --- webhooks -------------------------------------------------------------------------------


class TikTokWebhooks(PushReceiver):
    """POST `path`: verifies Authorization, drops repeated tts_notification_ids, and for an
    ORDER_STATUS_CHANGE fetches the order (the push names only its id and status) and hands
    its OrderEvent off before answering 200; a failed fetch or hand-off answers 503, so
    TikTok delivers again. TikTok waits about 3 seconds: fetch and hand-off share `timeout`."""

    def __init__(
        self,
        app_key: str,
        app_secret: SecretStr,
        apis: Sequence[TikTokApi],
        sink: EventSink,
        *,
        on_rejected: RejectSink | None = None,
        timeout: float = 2.5,
        remember: int = 100_000,
        path: str = "/webhooks/tiktok",
    ) -> None:
        super().__init__(path, remember=remember, max_body=MAX_BODY)
        self._app_key, self._secret = app_key, app_secret
        self._apis = {api.shop.shop_id: api for api in apis}
        self._sink, self._on_rejected = sink, on_rejected
        self._timeout = timeout

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_webhook(
            self._app_key, self._secret, body, request.headers.get("Authorization")
        ):
            return web.Response(status=401)
        try:
            notice = _notification(body)
        except InvalidEventError as exc:
            await reject(self._on_rejected, exc)
            return web.Response(status=200)
        key = str(notice.get("tts_notification_id") or "")
        if self.repeated(key):
            return web.Response(status=200)
        return await self.once(key, lambda: self._deliver(notice, key))

    async def _deliver(self, notice: dict[str, Any], key: str) -> web.Response:
        if notice.get("type") == ORDER_STATUS_CHANGE:
            api = self._apis.get(str(notice.get("shop_id")))
            if api is None:
                log.error("tiktok webhook for unconfigured shop %s", notice.get("shop_id"))
                return web.Response(status=404)
            if not await self._order_change(api, notice, key):
                return web.Response(status=503)
        return web.Response(status=200)

    async def _order_change(self, api: TikTokApi, notice: dict[str, Any], key: str) -> bool:
        source = f"tiktok webhook {key or '(no id)'}"
        try:
            await asyncio.wait_for(self._fetch_and_hand_off(api, notice, source), self._timeout)
        except InvalidEventError as exc:
            await reject(self._on_rejected, exc)  # fetching the same order again cannot fix it
            return True
        except Exception as exc:  # any other failure means: let TikTok deliver again
            log.error(
                "%s: fetch or hand-off failed (%s); answering 503", source, type(exc).__name__
            )
            return False
        return True

    async def _fetch_and_hand_off(
        self, api: TikTokApi, notice: dict[str, Any], source: str
    ) -> None:
        order_id = (notice.get("data") or {}).get("order_id")
        if not isinstance(order_id, str) or not order_id:
            raise InvalidEventError(source, "notification without data.order_id")
        data = await api.call("GET", ORDER_DETAIL_PATH, {"ids": order_id})
        orders = data.get("orders")
        if not isinstance(orders, list) or not orders:
            raise SourceError(source, f"order {order_id} not found")
        events: list[Event] = [order_event(orders[0], api.shop, f"{source} order")]
        await self._sink(events)


def _notification(body: bytes) -> dict[str, Any]:
    try:
        notice = json.loads(body, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError("tiktok webhook", f"body is not JSON: {exc}") from exc
    if not isinstance(notice, dict):
        raise InvalidEventError("tiktok webhook", "body is not a JSON object")
    return notice


# --- The connect file's section and builder ------------------------------------------------


class TikTokSection(TikTokConfig, Section):
    app_secret: SecretSource
    # Keyed by store_id; seeds only: TikTok may rotate them, the newest is kept in Redis.
    refresh_tokens: dict[str, SecretSource]
    webhooks: bool = True
    webhook_path: str = "/webhooks/tiktok"
    inventory: bool = True

    _tokens = field_validator("refresh_tokens")(one_token_per_store)


async def build_tiktok(section: TikTokSection, context: Context) -> Built:
    built = Built()
    apis = []
    for shop in section.shops:
        seed = section.refresh_tokens[shop.store_id]
        token, keep = await rotating_token(context, f"tiktok:{shop.store_id}", seed)
        api = TikTokApi(
            context.client,
            section.app_key,
            section.app_secret.get(),
            shop,
            token,
            api_host=section.api_host,
            auth_host=section.auth_host,
            on_refresh_token=keep,
        )
        apis.append(api)
        built.add(
            TikTokOrdersSource(api, section.start),
            FeedRef("tiktok", shop.marketplace, shop.store_id, "orders"),
        )
        if section.inventory and shop.product_ids:
            built.add(
                TikTokInventorySource(api),
                FeedRef("tiktok", shop.marketplace, shop.store_id, "inventory"),
            )
    if section.webhooks:
        built.receivers.append(
            TikTokWebhooks(
                section.app_key,
                section.app_secret.get(),
                apis,
                context.push_sink,
                on_rejected=context.on_rejected,
                path=section.webhook_path,
            )
        )
    return built
