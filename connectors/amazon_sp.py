"""Amazon Selling Partner API: orders (getOrders + getOrderItems) and FBA inventory summaries,
polled with Login-with-Amazon tokens, as checkpointed Sources.

Facts from the public models (github.com/amzn/selling-partner-api-models, ordersV0.json and
fbaInventory.json): responses are `{"payload": ..., "errors": [{code, message, details}]}`;
Money is `{CurrencyCode, Amount}` with Amount a string; ItemPrice is price x QuantityOrdered;
Pending orders carry no prices; usage plans getOrders 0.0167/s burst 20, getOrderItems 0.5/s
burst 30, getInventorySummaries 2/s burst 2; LastUpdatedBefore must be 2 minutes in the past.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeVar

import httpx
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from connectors.api import Backoff, Sleep, Throttle, TokenBucket, read_json, scrub
from connectors.base import FeedRef, Page, SourceError
from connectors.building import Built, Context, Section
from connectors.money import lines_for_total
from rules.errors import InvalidEventError
from rules.fileconfig import Seconds, SecretSource
from streams.events import (
    FeedName,
    InventoryEvent,
    Money,
    OrderEvent,
    OrderLine,
    OrderStatus,
    describe,
    minor_unit_exponent,
)

log = logging.getLogger(__name__)

LWA_TOKEN_URL: Final = "https://api.amazon.com/auth/o2/token"  # noqa: S105 - a URL
# Refresh this long before expires_in runs out, so no request leaves with a dying token.
TOKEN_MARGIN: Final = 60.0
# Amazon refuses a LastUpdatedBefore closer than 2 minutes to now.
LAG: Final = timedelta(minutes=2, seconds=10)

STATUSES: Final[dict[str, OrderStatus]] = {
    "PendingAvailability": "placed",
    "Pending": "placed",
    "Unshipped": "placed",
    "PartiallyShipped": "placed",
    "Shipped": "shipped",
    "InvoiceUnconfirmed": "shipped",
    "Canceled": "cancelled",
    "Unfulfillable": "cancelled",
}
Region = Literal["NA", "EU", "FE"]
# The regional SP-API endpoints (production; Amazon's sandbox is `sandbox.` + the host).
ENDPOINTS: Final[dict[Region, str]] = {
    "NA": "https://sellingpartnerapi-na.amazon.com",
    "EU": "https://sellingpartnerapi-eu.amazon.com",
    "FE": "https://sellingpartnerapi-fe.amazon.com",
}


@dataclass(frozen=True)
class Marketplace:
    """One entry of Amazon's marketplace id list: the ISO 3166 country our events use (Amazon
    writes UK; ISO says GB), the region whose endpoint serves it, its selling currency, and the
    SalesChannel its own orders carry (anything else is multi-channel fulfilment)."""

    id: str
    country: str
    region: Region
    currency: str
    channel: str


# developer-docs.amazon.com/sp-api/docs/marketplace-ids, the whole list, in its order.
OFFICIAL_MARKETPLACES: Final[tuple[Marketplace, ...]] = (
    Marketplace("A2EUQ1WTGCTBG2", "CA", "NA", "CAD", "Amazon.ca"),
    Marketplace("ATVPDKIKX0DER", "US", "NA", "USD", "Amazon.com"),
    Marketplace("A1AM78C64UM0Y8", "MX", "NA", "MXN", "Amazon.com.mx"),
    Marketplace("A2Q3Y263D00KWC", "BR", "NA", "BRL", "Amazon.com.br"),
    Marketplace("A28R8C7NBKEWEA", "IE", "EU", "EUR", "Amazon.ie"),
    Marketplace("A1RKKUPIHCS9HS", "ES", "EU", "EUR", "Amazon.es"),
    Marketplace("A1F83G8C2ARO7P", "GB", "EU", "GBP", "Amazon.co.uk"),
    Marketplace("A13V1IB3VIYZZH", "FR", "EU", "EUR", "Amazon.fr"),
    Marketplace("AMEN7PMS3EDWL", "BE", "EU", "EUR", "Amazon.com.be"),
    Marketplace("A1805IZSGTT6HS", "NL", "EU", "EUR", "Amazon.nl"),
    Marketplace("A1PA6795UKMFR9", "DE", "EU", "EUR", "Amazon.de"),
    Marketplace("APJ6JRA9NG5V4", "IT", "EU", "EUR", "Amazon.it"),
    Marketplace("A2NODRKZP88ZB9", "SE", "EU", "SEK", "Amazon.se"),
    Marketplace("AE08WJ6YKNBMC", "ZA", "EU", "ZAR", "Amazon.co.za"),
    Marketplace("A1C3SOZRARQ6R3", "PL", "EU", "PLN", "Amazon.pl"),
    Marketplace("ARBP9OOSHTCHU", "EG", "EU", "EGP", "Amazon.eg"),
    Marketplace("A33AVAJ2PDY3EV", "TR", "EU", "TRY", "Amazon.com.tr"),
    Marketplace("A17E79C6D8DWNP", "SA", "EU", "SAR", "Amazon.sa"),
    Marketplace("A2VIGQ35RCS4UG", "AE", "EU", "AED", "Amazon.ae"),
    Marketplace("A21TJRUUN4KGV", "IN", "EU", "INR", "Amazon.in"),
    Marketplace("A19VAU5U5O7RUS", "SG", "FE", "SGD", "Amazon.sg"),
    Marketplace("A39IBJ37TRP1C6", "AU", "FE", "AUD", "Amazon.com.au"),
    Marketplace("A1VC38T7YXB528", "JP", "FE", "JPY", "Amazon.co.jp"),
)
MARKETPLACE_BY_ID: Final[dict[str, Marketplace]] = {m.id: m for m in OFFICIAL_MARKETPLACES}
# Marketplace id -> ISO country code (what amazon_ads reads).
MARKETPLACES: Final[dict[str, str]] = {m.id: m.country for m in OFFICIAL_MARKETPLACES}


class SpStore(BaseModel):
    """One seller account in one marketplace. `currency` defaults to the marketplace's; it
    prices cancelled orders that Amazon returns without prices (never GMV)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(min_length=1)
    marketplace_id: str
    currency: str = Field(default="", validate_default=True)

    @field_validator("marketplace_id")
    @classmethod
    def _official(cls, value: str) -> str:
        if value not in MARKETPLACE_BY_ID:
            raise ValueError(
                f"{value!r} is not on Amazon's marketplace id list "
                "(developer-docs.amazon.com/sp-api/docs/marketplace-ids), e.g. ATVPDKIKX0DER "
                "for the US, A1PA6795UKMFR9 for Germany"
            )
        return value

    @field_validator("currency")
    @classmethod
    def _selling_currency(cls, value: str, info: ValidationInfo) -> str:
        found = MARKETPLACE_BY_ID.get(info.data.get("marketplace_id", ""))
        if not value:
            if found is None:
                return value  # the marketplace id is already reported
            return found.currency
        if value != value.upper():
            raise ValueError(f"write currency codes in capitals: {value.upper()!r}, not {value!r}")
        minor_unit_exponent(value)
        if found is not None and value != found.currency:
            raise ValueError(
                f"Amazon {found.country} ({found.id}) sells in {found.currency}, not {value}"
            )
        return value

    @property
    def info(self) -> Marketplace:
        return MARKETPLACE_BY_ID[self.marketplace_id]

    @property
    def marketplace(self) -> str:
        return self.info.country


def check_endpoint(endpoint: str) -> str:
    """An endpoint is a URL with its scheme (`https://sellingpartnerapi-eu.amazon.com`)."""
    url = httpx.URL(endpoint) if "://" in endpoint else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"{endpoint!r} is not a URL: write it with its scheme, e.g. {ENDPOINTS['EU']}"
        )
    return endpoint.rstrip("/")


def endpoint_region(endpoint: str) -> Region | None:
    """The region an Amazon SP-API host serves (sandbox hosts too); None for any other host
    (a proxy, a test server)."""
    host = httpx.URL(endpoint).host.removeprefix("sandbox.")
    for region, url in ENDPOINTS.items():
        if httpx.URL(url).host == host:
            return region
    return None


class AmazonSpConfig(BaseModel):
    """The non-secret settings of the `amazon_sp:` section. `endpoint` is the region's own
    unless set; set, it must serve every store's marketplace."""

    model_config = ConfigDict(extra="forbid")

    stores: list[SpStore] = Field(min_length=1)
    endpoint: str | None = Field(default=None, validate_default=True)

    @field_validator("stores")
    @classmethod
    def _unique(cls, stores: list[SpStore]) -> list[SpStore]:
        names = [store.store_id for store in stores]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"store_id listed more than once: {', '.join(repeated)}")
        return stores

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = check_endpoint(value)
        region = endpoint_region(value)
        for store in info.data.get("stores") or []:
            if region is not None and store.info.region != region:
                raise ValueError(
                    f"{value} is the {region} endpoint, but store {store.store_id}'s marketplace "
                    f"{store.marketplace_id} (Amazon {store.marketplace}) is served by "
                    f"{store.info.region}: {ENDPOINTS[store.info.region]}"
                )
        return value

    def endpoint_for(self, store: SpStore) -> str:
        return self.endpoint or ENDPOINTS[store.info.region]


class LwaTokens:
    """Access tokens from a refresh token (POST grant_type=refresh_token to LWA), reused until
    shortly before they expire; `invalidate` after the API said the token expired."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        client_id: str,
        client_secret: SecretStr,
        refresh_token: SecretStr,
        *,
        url: str = LWA_TOKEN_URL,
        clock: Callable[[], float] = time.monotonic,
        throttle: Throttle | None = None,
    ) -> None:
        self._client, self._url, self._clock = client, url, clock
        self._form = (client_id, client_secret, refresh_token)
        self._throttle = throttle or Throttle("Login with Amazon token refresh")
        self._token: SecretStr | None = None
        self._expires = 0.0
        self.refreshes = 0

    async def token(self) -> str:
        if self._token is None or self._clock() >= self._expires - TOKEN_MARGIN:
            await self._refresh()
        if self._token is None:  # pragma: no cover - _refresh sets it or raises
            raise SourceError("Login with Amazon", "no access token")
        return self._token.get_secret_value()

    def invalidate(self) -> None:
        self._token = None

    async def _refresh(self) -> None:
        client_id, secret, refresh = self._form
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh.get_secret_value(),
            "client_id": client_id,
            "client_secret": secret.get_secret_value(),
        }
        response = await self._throttle.send(
            self._client, lambda: self._client.build_request("POST", self._url, data=form)
        )
        body = read_json(response, "Login with Amazon")
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            # LWA answers {"error": "invalid_grant", "error_description": ...}; whatever
            # answers instead (a proxy) may quote the form back.
            reason = f"{body.get('error', '?')}: {body.get('error_description', '')}"
            reason = scrub(reason, self._form[1:])
            raise SourceError("Login with Amazon", f"HTTP {response.status_code}, {reason}")
        self._token = SecretStr(body["access_token"])
        self._expires = self._clock() + float(body.get("expires_in", 3600))
        self.refreshes += 1


class SpApiError(SourceError):
    """SP-API answered with an error status that a retry did not cure."""

    def __init__(self, operation: str, status: int, errors: str) -> None:
        self.status = status
        super().__init__(operation, f"HTTP {status}: {errors}")

    @property
    def refused_request(self) -> bool:
        """400 or 404: this request is wrong (a stale page token, an order Amazon will not
        show), not the account or the service."""
        return self.status in (400, 404)


@dataclass
class SpApi:
    """Authenticated GETs against one SP-API regional endpoint, throttled per operation."""

    client: httpx.AsyncClient
    tokens: LwaTokens
    endpoint: str = "https://sellingpartnerapi-na.amazon.com"
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Sleep = asyncio.sleep
    throttles: dict[str, Throttle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        plans = {
            "getOrders": (1 / 60, 20),
            "getOrderItems": (0.5, 30),
            "getInventorySummaries": (2.0, 2),
        }
        for operation, (rate, burst) in plans.items():
            bucket = TokenBucket(rate, burst, sleep=self.sleep)
            self.throttles.setdefault(
                operation, Throttle(operation, bucket, self.backoff, self.sleep)
            )

    async def get(self, operation: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The JSON of a 200; a token Amazon calls expired is refreshed once and retried."""
        for _ in range(2):
            response = await self._send(operation, path, params, await self.tokens.token())
            body = read_json(response, operation)
            if not _token_expired(response, body):
                break
            self.tokens.invalidate()
        if response.status_code != 200:
            raise SpApiError(operation, response.status_code, _errors(body))
        return body

    async def _send(
        self, operation: str, path: str, params: dict[str, str], token: str
    ) -> httpx.Response:
        headers = {"x-amz-access-token": token}
        return await self.throttles[operation].send(
            self.client,
            lambda: self.client.build_request(
                "GET", self.endpoint + path, params=params, headers=headers
            ),
        )


def _token_expired(response: httpx.Response, body: dict[str, Any]) -> bool:
    if response.status_code == 401:
        return True
    return response.status_code == 403 and "expired" in _errors(body).lower()


def _errors(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    if not isinstance(errors, list):
        return "no error details"
    return "; ".join(
        f"{e.get('code')}: {e.get('message')} {e.get('details') or ''}".strip()
        for e in errors
        if isinstance(e, dict)
    )


class _Cursor(BaseModel):
    """Where a pass stands: the window (after, before] and the page token inside it."""

    after: datetime
    before: datetime | None = None
    next_token: str | None = None


class _InventoryCursor(_Cursor):
    """Also whether this pass is a full one (no startDateTime) and when the last full pass
    began (None: never, so the next pass is full)."""

    full: bool = False
    full_at: datetime | None = None


_CursorT = TypeVar("_CursorT", bound=_Cursor)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Page tokens expire (inventory's after 30 s); a refused one restarts the window, at most this
# many times a pass, so a token that is refused every time cannot loop forever.
TOKEN_RESTARTS: Final = 3
# A record whose own request is refused (getOrderItems 400/404) is asked for this many times,
# then dead-lettered with Amazon's reason: one bad order must not hold up the feed.
ITEM_ATTEMPTS: Final = 3


@dataclass
class _Restarts:
    """How many times this pass dropped a refused page token."""

    count: int = 0


async def _get_page(
    api: SpApi,
    operation: str,
    path: str,
    state: _CursorT,
    params: Callable[[_CursorT], dict[str, str]],
    restarts: _Restarts,
    where: str,
) -> tuple[dict[str, Any], _CursorT]:
    """One page of a window; a page token Amazon refuses (expired, or saved before a restart)
    is dropped and the window read again from its start (event ids do not change, so what is
    read twice counts once)."""
    while True:
        try:
            return await api.get(operation, path, params(state)), state
        except SpApiError as exc:
            stale = state.next_token is not None and exc.refused_request
            if not stale or restarts.count >= TOKEN_RESTARTS:
                raise
            restarts.count += 1
            log.warning("%s: page token refused (%s); reading the window again", where, exc.reason)
            state = state.model_copy(update={"next_token": None})


@dataclass
class AmazonOrdersSource:
    """getOrders by LastUpdatedAfter (the source of truth: notifications may be late or lost),
    each order's items for prices, one Page per getOrders page. Orders that are not sales of
    this marketplace (multi-channel fulfilment, replacements) are left out; `excluded` counts
    them."""

    api: SpApi
    store: SpStore
    start: datetime
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    excluded: int = 0

    @property
    def name(self) -> str:
        return f"amazon_sp:orders:{self.store.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = _Cursor.model_validate_json(cursor) if cursor else _Cursor(after=self.start)
        if state.before is None:
            state = state.model_copy(update={"before": self.now() - LAG})
        number, restarts = 0, _Restarts()
        while True:
            number += 1
            where = f"{self.name} getOrders page {number} (after {_iso(state.after)})"
            body, state = await _get_page(
                self.api, "getOrders", "/orders/v0/orders", state, self._params, restarts, where
            )
            payload = _payload(body, where)
            orders = payload.get("Orders")
            if not isinstance(orders, list):
                raise SourceError(where, "payload has no Orders list")
            events, rejected = await self._map_orders(orders, where)
            token = payload.get("NextToken") or None
            state = _next(state, token)
            yield Page(events, state.model_dump_json(), rejected)
            if token is None:
                return

    def _params(self, state: _Cursor) -> dict[str, str]:
        params = {"MarketplaceIds": self.store.marketplace_id}
        if state.next_token:
            params["NextToken"] = state.next_token
        else:
            params["LastUpdatedAfter"] = _iso(state.after)
            if state.before is not None:
                params["LastUpdatedBefore"] = _iso(state.before)
        return params

    async def _map_orders(
        self, orders: list[Any], where: str
    ) -> tuple[list[OrderEvent], list[InvalidEventError]]:
        events: list[OrderEvent] = []
        rejected: list[InvalidEventError] = []
        for index, order in enumerate(orders):
            source = f"{where} order {index}"
            try:
                event = await self._order(order, source)
            except InvalidEventError as exc:
                rejected.append(exc)
                continue
            if event is not None:
                events.append(event)
        return events, rejected

    async def _order(self, order: Any, source: str) -> OrderEvent | None:
        if not isinstance(order, dict) or not isinstance(order.get("AmazonOrderId"), str):
            raise InvalidEventError(source, "order without an AmazonOrderId")
        source = f"{source} ({order['AmazonOrderId']})"
        if order.get("OrderStatus") in ("Pending", "PendingAvailability"):
            # No prices until payment is authorised; the order comes back with a newer
            # LastUpdateDate once it is Unshipped (or Canceled).
            return None
        reason = not_a_marketplace_sale(order, self.store)
        if reason is not None:
            self.excluded += 1
            log.info("%s: left out of %s's KPIs: %s", source, self.store.store_id, reason)
            return None
        items = await self._items_or_reject(order["AmazonOrderId"], source)
        return order_event(order, items, self.store, source)

    async def _items_or_reject(self, order_id: str, source: str) -> list[Any]:
        """The order's items; a request Amazon keeps refusing dead-letters the order (the
        cursor moves on) instead of failing every pass from here on."""
        for attempt in range(ITEM_ATTEMPTS):
            try:
                return await self._items(order_id)
            except SpApiError as exc:
                if not exc.refused_request:
                    raise
                refused = exc
            if attempt + 1 < ITEM_ATTEMPTS:
                await self.api.sleep(self.api.backoff.delay(attempt))
        raise InvalidEventError(
            source, f"getOrderItems refused {ITEM_ATTEMPTS} times: {refused.reason}"
        )

    async def _items(self, order_id: str) -> list[Any]:
        items: list[Any] = []
        state = _Cursor(after=self.start)  # only its page token is used
        path = f"/orders/v0/orders/{order_id}/orderItems"
        where = f"{self.name} getOrderItems {order_id}"
        restarts = _Restarts()
        while True:
            body, fresh = await _get_page(
                self.api, "getOrderItems", path, state, _token_param, restarts, where
            )
            if fresh.next_token != state.next_token:
                items = []  # its token was refused: the order's items again from the first page
            payload = _payload(body, where)
            items.extend(payload.get("OrderItems") or [])
            token = payload.get("NextToken") or None
            if token is None:
                return items
            state = fresh.model_copy(update={"next_token": token})


def _token_param(state: _Cursor) -> dict[str, str]:
    return {"NextToken": state.next_token} if state.next_token else {}


def not_a_marketplace_sale(order: dict[str, Any], store: SpStore) -> str | None:
    """Why an order is not a sale of the store's marketplace, or None if it is. Multi-channel
    fulfilment orders (SalesChannel "Non-Amazon", a web shop's order shipped from FBA) and
    replacement orders (sent free for a damaged or lost one) are not marketplace sales."""
    if order.get("IsReplacementOrder") in (True, "true"):
        replaced = order.get("ReplacedOrderId")
        return f"a replacement order{f' for {replaced}' if replaced else ''}"
    channel = order.get("SalesChannel")
    if channel is not None and str(channel).lower() != store.info.channel.lower():
        return f"SalesChannel {channel!r} is not {store.info.channel} (multi-channel fulfilment)"
    return None


def _payload(body: dict[str, Any], where: str) -> dict[str, Any]:
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise SourceError(where, "response has no payload object")
    return payload


def _next(state: _CursorT, token: str | None) -> _CursorT:
    if token is not None:
        return state.model_copy(update={"next_token": token})
    # The window is done: the next pass starts where this one's upper bound was.
    if state.before is None:  # pragma: no cover - pages() always sets it
        raise ValueError("window without an upper bound")
    done: dict[str, Any] = {"after": state.before, "before": None, "next_token": None}
    if isinstance(state, _InventoryCursor):
        done |= {"full": False, "full_at": state.before if state.full else state.full_at}
    return state.model_copy(update=done)


def order_event(order: dict[str, Any], items: list[Any], store: SpStore, source: str) -> OrderEvent:
    """One Order and its OrderItems as our event; event_id = AmazonOrderId + LastUpdateDate, so
    a replayed page gives the same id and a status change a new one. occurred_at (the version)
    is LastUpdateDate, placed_at (the day it counts in) PurchaseDate. A cancelled order whose
    items are all QuantityOrdered 0 is a cancellation without lines."""
    status = STATUSES.get(str(order.get("OrderStatus")))
    if status is None:
        raise InvalidEventError(source, f"unknown OrderStatus {order.get('OrderStatus')!r}")
    try:
        lines = [line for item in items for line in _item_lines(item, status, store)]
        return OrderEvent.model_validate(
            {
                "event_id": f"amazon:{order['AmazonOrderId']}:{order.get('LastUpdateDate')}",
                "occurred_at": order.get("LastUpdateDate"),
                "platform": "amazon",
                "marketplace": store.marketplace,
                "store_id": store.store_id,
                "order_id": order["AmazonOrderId"],
                "status": status,
                "lines": lines,
                "fulfillment_channel": "marketplace"
                if order.get("FulfillmentChannel") == "AFN"
                else "merchant",
                "ship_by": order.get("LatestShipDate"),
                # The day an order counts in is its purchase day, in the marketplace's zone.
                "placed_at": order.get("PurchaseDate"),
            }
        )
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise InvalidEventError(source, str(exc)) from exc


def _item_lines(item: Any, status: OrderStatus, store: SpStore) -> list[OrderLine]:
    if not isinstance(item, dict):
        raise ValueError("an OrderItems entry is not an object")
    sku = item.get("SellerSKU") or item.get("ASIN")
    quantity = item.get("QuantityOrdered")
    if not isinstance(sku, str) or not isinstance(quantity, int):
        raise ValueError(f"order item {item.get('OrderItemId')} lacks SellerSKU/QuantityOrdered")
    price = item.get("ItemPrice")
    if quantity == 0:
        return []  # a fully cancelled item: Amazon reports QuantityOrdered 0
    if not isinstance(price, dict):
        if status != "cancelled":
            raise ValueError(f"order item {item.get('OrderItemId')} has no ItemPrice")
        zero = Money(amount=Decimal(0), currency=store.currency)
        return [OrderLine(sku=sku, quantity=quantity, unit_price=zero)]
    amount = Decimal(str(price.get("Amount")))
    return lines_for_total(sku, quantity, amount, str(price.get("CurrencyCode")))


@dataclass
class AmazonInventorySource:
    """FBA getInventorySummaries (details=true) with nextToken paging: the SKUs changed since
    the last pass (startDateTime), and a full pass (every SKU) on start and every `full_every`,
    because startDateTime misses inbound-only changes (Amazon's note) and SKUs unchanged since
    `start` would never get a snapshot."""

    api: SpApi
    store: SpStore
    start: datetime
    full_every: timedelta | None = timedelta(days=1)
    full_on_start: bool = True
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _started: bool = field(default=False, init=False)

    @property
    def name(self) -> str:
        return f"amazon_sp:inventory:{self.store.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = self._begin(cursor)
        number, restarts = 0, _Restarts()
        while True:
            number += 1
            kind = "full pass" if state.full else f"changed since {_iso(state.after)}"
            where = f"{self.name} getInventorySummaries page {number} ({kind})"
            body, state = await _get_page(
                self.api,
                "getInventorySummaries",
                "/fba/inventory/v1/summaries",
                state,
                self._params,
                restarts,
                where,
            )
            summaries = _payload(body, where).get("inventorySummaries")
            if not isinstance(summaries, list):
                raise SourceError(where, "payload has no inventorySummaries list")
            events, rejected = self._map(summaries, where, state)
            pagination = body.get("pagination")
            token = pagination.get("nextToken") if isinstance(pagination, dict) else None
            state = _next(state, token or None)
            yield Page(events, state.model_dump_json(), rejected)
            if not token:
                return

    def _begin(self, cursor: str | None) -> _InventoryCursor:
        """The pass's cursor: a pass cut short goes on as it was; a new one is full on this
        process's first pass, when no full pass is recorded, or when the last is too old."""
        if cursor:
            state = _InventoryCursor.model_validate_json(cursor)
        else:
            state = _InventoryCursor(after=self.start)
        first, self._started = not self._started, True
        if state.before is not None:
            return state
        now = self.now()
        due = self.full_every is not None and (
            state.full_at is None or now - state.full_at >= self.full_every
        )
        full = due or (first and self.full_on_start)
        return state.model_copy(update={"before": now, "full": full})

    def _params(self, state: _InventoryCursor) -> dict[str, str]:
        params = {
            "details": "true",
            "granularityType": "Marketplace",
            "granularityId": self.store.marketplace_id,
            "marketplaceIds": self.store.marketplace_id,
        }
        if not state.full:
            # Amazon: use startDateTime together with nextToken on the following pages.
            params["startDateTime"] = _iso(state.after)
        if state.next_token:
            params["nextToken"] = state.next_token
        return params

    def _map(
        self, summaries: list[Any], where: str, state: _InventoryCursor
    ) -> tuple[list[InventoryEvent], list[InvalidEventError]]:
        events, rejected = [], []
        for index, summary in enumerate(summaries):
            try:
                events.append(inventory_event(summary, self.store, state, f"{where} item {index}"))
            except InvalidEventError as exc:
                rejected.append(exc)
        return events, rejected


def inventory_event(
    summary: Any, store: SpStore, state: _InventoryCursor, source: str
) -> InventoryEvent:
    """An InventorySummary as a snapshot as of its lastUpdatedTime. A full pass reads every
    SKU as it is now, so its snapshots are as of the pass's upper bound (kept in the cursor,
    so a replayed page gives the same event_id): that is newer than what an inbound-only
    change left as lastUpdatedTime. The bound also stands in when lastUpdatedTime is missing."""
    if not isinstance(summary, dict):
        raise InvalidEventError(source, "an inventorySummaries entry is not an object")
    details = summary.get("inventoryDetails") or {}
    bound = state.before and _iso(state.before)
    as_of = bound if state.full else summary.get("lastUpdatedTime") or bound
    try:
        reserved = (details.get("reservedQuantity") or {}).get("totalReservedQuantity", 0)
        inbound = sum(
            int(details.get(k) or 0)
            for k in (
                "inboundWorkingQuantity",
                "inboundShippedQuantity",
                "inboundReceivingQuantity",
            )
        )
        return InventoryEvent.model_validate(
            {
                "event_id": f"amazon:inv:{store.marketplace_id}:{summary.get('sellerSku')}:{as_of}",
                "occurred_at": as_of,
                "platform": "amazon",
                "marketplace": store.marketplace,
                "store_id": store.store_id,
                "sku": summary.get("sellerSku"),
                "warehouse": "fba",
                "available": details.get("fulfillableQuantity", 0),
                "inbound": inbound,
                "reserved": reserved,
                "as_of": as_of,
            }
        )
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidEventError(source, f"malformed inventoryDetails: {exc}") from exc


# --- The connect file's section and builder ------------------------------------------------


class SpStoreSection(SpStore):
    refresh_token: SecretSource


class AmazonSpSection(AmazonSpConfig, Section):
    client_id: str = Field(min_length=1)
    client_secret: SecretSource
    token_url: str = LWA_TOKEN_URL
    start: AwareDatetime
    feeds: list[Literal["orders", "inventory"]] = Field(
        default=["orders", "inventory"], min_length=1
    )
    # Before `endpoint` (AmazonSpConfig checks the endpoint against every store's region).
    stores: list[SpStoreSection] = Field(min_length=1)  # type: ignore[assignment]
    endpoint: str | None = Field(default=None, validate_default=True)
    # startDateTime passes miss inbound-only changes: a full pass on start and this often.
    inventory_full_every: Seconds = 86400.0
    inventory_full_on_start: bool = True


async def build_amazon_sp(section: AmazonSpSection, context: Context) -> Built:
    built = Built()
    for entry in section.stores:
        tokens = LwaTokens(
            context.client,
            section.client_id,
            section.client_secret.get(),
            entry.refresh_token.get(),
            url=section.token_url,
        )
        store = SpStore(**entry.model_dump(include=set(SpStore.model_fields)))
        api = SpApi(context.client, tokens, endpoint=section.endpoint_for(store))
        if "orders" in section.feeds:
            built.sources.append(AmazonOrdersSource(api, store, section.start))
        if "inventory" in section.feeds:
            built.sources.append(
                AmazonInventorySource(
                    api,
                    store,
                    section.start,
                    full_every=timedelta(seconds=section.inventory_full_every),
                    full_on_start=section.inventory_full_on_start,
                )
            )
    return built


async def build_amazon_sp_reported(section: AmazonSpSection, context: Context) -> Built:
    """build_amazon_sp, each source's store feed named so its passes are reported."""
    built = await build_amazon_sp(section, context)
    for source in built.sources:
        if isinstance(source, AmazonOrdersSource | AmazonInventorySource):
            feed: FeedName = "orders" if isinstance(source, AmazonOrdersSource) else "inventory"
            try:
                marketplace = source.store.marketplace
            except ValueError:
                continue  # an unknown marketplace id: its records are refused with the reason
            built.feeds[source.name] = FeedRef("amazon", marketplace, source.store.store_id, feed)
    return built
