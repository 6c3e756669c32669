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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from connectors.api import Backoff, Sleep, Throttle, TokenBucket, read_json
from connectors.base import Page, SourceError
from connectors.money import lines_for_total
from rules.errors import InvalidEventError
from streams.events import (
    InventoryEvent,
    Money,
    OrderEvent,
    OrderLine,
    OrderStatus,
    describe,
)

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
# Amazon's marketplace ids (developer-docs.amazon.com/sp-api/docs/marketplace-ids) as the ISO
# country codes our events use (Amazon says UK; ISO 3166 says GB).
MARKETPLACES: Final[dict[str, str]] = {
    "ATVPDKIKX0DER": "US",
    "A2EUQ1WTGCTBG2": "CA",
    "A1AM78C64UM0Y8": "MX",
    "A2Q3Y263D00KWC": "BR",
    "A1F83G8C2ARO7P": "GB",
    "A1PA6795UKMFR9": "DE",
    "A13V1IB3VIYZZH": "FR",
    "APJ6JRA9NG5V4": "IT",
    "A1RKKUPIHCS9HS": "ES",
    "A1805IZSGTT6HS": "NL",
    "A2NODRKZP88ZB9": "SE",
    "A1C3SOZRARQ6R3": "PL",
    "A21TJRUUN4KGV": "IN",
    "A1VC38T7YXB528": "JP",
    "A19VAU5U5O7RUS": "SG",
    "A39IBJ37TRP1C6": "AU",
    "A2VIGQ35RCS4UG": "AE",
}


class SpStore(BaseModel):
    """One seller account in one marketplace. `currency` prices cancelled orders that Amazon
    returns without prices (they count as a cancellation, never as GMV)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str
    marketplace_id: str
    currency: str

    @property
    def marketplace(self) -> str:
        try:
            return MARKETPLACES[self.marketplace_id]
        except KeyError:
            raise ValueError(f"unknown Amazon marketplace id {self.marketplace_id!r}") from None


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
            # LWA answers {"error": "invalid_grant", "error_description": ...}: no secret in it.
            reason = f"{body.get('error', '?')}: {body.get('error_description', '')}"
            raise SourceError("Login with Amazon", f"HTTP {response.status_code}, {reason}")
        self._token = SecretStr(body["access_token"])
        self._expires = self._clock() + float(body.get("expires_in", 3600))
        self.refreshes += 1


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
            raise SourceError(operation, f"HTTP {response.status_code}: {_errors(body)}")
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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AmazonOrdersSource:
    """getOrders by LastUpdatedAfter (the source of truth: notifications may be late or lost),
    each order's items for prices, one Page per getOrders page."""

    api: SpApi
    store: SpStore
    start: datetime
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def name(self) -> str:
        return f"amazon_sp:orders:{self.store.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = _Cursor.model_validate_json(cursor) if cursor else _Cursor(after=self.start)
        if state.before is None:
            state = state.model_copy(update={"before": self.now() - LAG})
        number = 0
        while True:
            number += 1
            where = f"{self.name} getOrders page {number} (after {_iso(state.after)})"
            body = await self.api.get("getOrders", "/orders/v0/orders", self._params(state))
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
        items = await self._items(order["AmazonOrderId"])
        return order_event(order, items, self.store, source)

    async def _items(self, order_id: str) -> list[Any]:
        items: list[Any] = []
        token: str | None = None
        while True:
            params = {"NextToken": token} if token else {}
            body = await self.api.get(
                "getOrderItems", f"/orders/v0/orders/{order_id}/orderItems", params
            )
            payload = _payload(body, f"{self.name} getOrderItems {order_id}")
            items.extend(payload.get("OrderItems") or [])
            token = payload.get("NextToken") or None
            if token is None:
                return items


def _payload(body: dict[str, Any], where: str) -> dict[str, Any]:
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise SourceError(where, "response has no payload object")
    return payload


def _next(state: _Cursor, token: str | None) -> _Cursor:
    if token is not None:
        return state.model_copy(update={"next_token": token})
    # The window is done: the next pass starts where this one's upper bound was.
    if state.before is None:  # pragma: no cover - pages() always sets it
        raise ValueError("window without an upper bound")
    return _Cursor(after=state.before)


def order_event(order: dict[str, Any], items: list[Any], store: SpStore, source: str) -> OrderEvent:
    """One Order and its OrderItems as our event; event_id = AmazonOrderId + LastUpdateDate, so
    a replayed page gives the same id and a status change a new one."""
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
    """FBA getInventorySummaries (details=true) changed since the last pass (startDateTime),
    with nextToken paging. Inbound-only changes are not reported by startDateTime (Amazon's
    note), so a full pass without it now and then catches them: pass `full=True`."""

    api: SpApi
    store: SpStore
    start: datetime
    full: bool = False
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def name(self) -> str:
        return f"amazon_sp:inventory:{self.store.store_id}"

    async def pages(self, cursor: str | None) -> AsyncIterator[Page]:
        state = _Cursor.model_validate_json(cursor) if cursor else _Cursor(after=self.start)
        if state.before is None:
            state = state.model_copy(update={"before": self.now()})
        number = 0
        while True:
            number += 1
            where = f"{self.name} getInventorySummaries page {number}"
            body = await self.api.get(
                "getInventorySummaries", "/fba/inventory/v1/summaries", self._params(state)
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

    def _params(self, state: _Cursor) -> dict[str, str]:
        params = {
            "details": "true",
            "granularityType": "Marketplace",
            "granularityId": self.store.marketplace_id,
            "marketplaceIds": self.store.marketplace_id,
        }
        if not self.full:
            # Amazon: use startDateTime together with nextToken on the following pages.
            params["startDateTime"] = _iso(state.after)
        if state.next_token:
            params["nextToken"] = state.next_token
        return params

    def _map(
        self, summaries: list[Any], where: str, state: _Cursor
    ) -> tuple[list[InventoryEvent], list[InvalidEventError]]:
        events, rejected = [], []
        for index, summary in enumerate(summaries):
            try:
                events.append(inventory_event(summary, self.store, state, f"{where} item {index}"))
            except InvalidEventError as exc:
                rejected.append(exc)
        return events, rejected


def inventory_event(summary: Any, store: SpStore, state: _Cursor, source: str) -> InventoryEvent:
    """An InventorySummary as a snapshot; without lastUpdatedTime, the pass's own upper bound
    (kept in the cursor, so a replayed page gives the same event_id) stands in as of time."""
    if not isinstance(summary, dict):
        raise InvalidEventError(source, "an inventorySummaries entry is not an object")
    details = summary.get("inventoryDetails") or {}
    as_of = summary.get("lastUpdatedTime") or (state.before and _iso(state.before))
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
