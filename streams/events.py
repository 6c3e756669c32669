"""The event contract: what connectors put on the Kafka topics, validated the same way everywhere.

Events are JSON on the wire, keyed by `store_id` so one store's events keep their order on one
partition. Anything that does not validate raises `InvalidEventError` with a reason a person can
act on; callers dead-letter it and carry on.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import iso4217
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from rules.errors import InvalidEventError

Platform = Literal["amazon", "walmart", "shopify", "shopee", "lazada", "tiktok", "rakuten", "yahoo"]
EventKind = Literal["order", "ad_spend", "inventory"]
OrderStatus = Literal["placed", "shipped", "delivered", "cancelled", "returned", "refunded"]

# Topic names per event kind (before any deployment prefix).
TOPICS: Final[dict[EventKind, str]] = {
    "order": "orders",
    "ad_spend": "ad-spend",
    "inventory": "inventory",
}

# Bounds that no real event crosses: beyond them a producer has a bug (cents sent as units,
# an epoch in milliseconds read as seconds), and counting the event would poison the KPIs.
MAX_AMOUNT: Final = Decimal("100000000")
MAX_QUANTITY: Final = 100_000
MIN_YEAR, MAX_YEAR = 2000, 2100

# No control characters: ids go into table keys joined by one (streams.kpi.SEP), and into logs.
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _sane_time(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} is outside {MIN_YEAR}..{MAX_YEAR}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(_Strict):
    """An amount in one ISO 4217 currency; never a float."""

    amount: Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
    currency: str

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        # A JSON float has already lost the cent; insist on a string or an integer.
        if isinstance(value, float):
            raise ValueError('amount must be a string or an integer, not a float (e.g. "12.34")')
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        minor_unit_exponent(value)
        return value

    @model_validator(mode="after")
    def _fits_minor_unit(self) -> Money:
        exponent = minor_unit_exponent(self.currency)
        places = -int(self.amount.as_tuple().exponent)
        if places > exponent and self.amount != self.amount.quantize(Decimal(1).scaleb(-exponent)):
            raise ValueError(
                f"{self.amount} {self.currency} has more decimals than the currency's "
                f"{exponent} minor digits"
            )
        return self

    def minor_units(self) -> int:
        """The amount as an integer count of the currency's minor unit (cents, or yen)."""
        return int(self.amount.scaleb(minor_unit_exponent(self.currency)))


@functools.cache
def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 code (USD 2, JPY 0, KWD 3)."""
    try:
        exponent = iso4217.Currency(currency).exponent
    except ValueError:
        raise ValueError(f"unknown currency {currency!r} (expected an ISO 4217 code)") from None
    if exponent is None:
        raise ValueError(f"{currency!r} is not a currency that money can be counted in")
    return int(exponent)


class EventBase(_Strict):
    event_id: Text
    occurred_at: AwareDatetime
    platform: Platform
    marketplace: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    store_id: Text

    @field_validator("occurred_at")
    @classmethod
    def _occurred_sane(cls, value: datetime) -> datetime:
        return _sane_time(value)


class OrderLine(_Strict):
    sku: Text
    quantity: Annotated[PositiveInt, Field(le=MAX_QUANTITY)]
    unit_price: Money


class OrderEvent(EventBase):
    type: Literal["order"] = "order"
    order_id: Text
    status: OrderStatus
    lines: Annotated[list[OrderLine], Field(min_length=1)]
    fulfillment_channel: Literal["marketplace", "merchant"] = "merchant"
    ship_by: AwareDatetime | None = None
    shipped_at: AwareDatetime | None = None
    # Test and brushing orders are recorded but never counted in a KPI.
    is_test: bool = False

    @model_validator(mode="after")
    def _one_currency(self) -> OrderEvent:
        currencies = {line.unit_price.currency for line in self.lines}
        if len(currencies) > 1:
            raise ValueError(f"order lines mix currencies {sorted(currencies)}")
        return self

    @property
    def currency(self) -> str:
        return self.lines[0].unit_price.currency


class AdSpendEvent(EventBase):
    type: Literal["ad_spend"] = "ad_spend"
    campaign_id: Text
    sku: Text | None = None
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    impressions: NonNegativeInt
    clicks: NonNegativeInt
    spend: Money
    attributed_sales: Money
    attributed_orders: NonNegativeInt

    @model_validator(mode="after")
    def _consistent(self) -> AdSpendEvent:
        if self.interval_end <= self.interval_start:
            raise ValueError("interval_end must be after interval_start")
        if self.spend.currency != self.attributed_sales.currency:
            raise ValueError("spend and attributed_sales must be in the same currency")
        return self


class InventoryEvent(EventBase):
    type: Literal["inventory"] = "inventory"
    sku: Text
    warehouse: Literal["fba", "3pl", "own"]
    available: Annotated[NonNegativeInt, Field(le=10_000_000)]
    inbound: Annotated[NonNegativeInt, Field(le=10_000_000)] = 0
    reserved: Annotated[NonNegativeInt, Field(le=10_000_000)] = 0
    as_of: AwareDatetime


Event = OrderEvent | AdSpendEvent | InventoryEvent
_ANY_EVENT: Final[TypeAdapter[Event]] = TypeAdapter(Annotated[Event, Field(discriminator="type")])
_BY_KIND: Final[dict[EventKind, type[EventBase]]] = {
    "order": OrderEvent,
    "ad_spend": AdSpendEvent,
    "inventory": InventoryEvent,
}


def decode(raw: bytes | str, source: str, kind: EventKind | None = None) -> Event:
    """Parse and validate one event; `kind` is fixed by the topic, or read from `type` in files.

    Raises InvalidEventError naming `source` (topic/partition/offset or file:line) and the reason.
    """
    try:
        # Decimal for JSON numbers: 19.99 stays exactly 19.99 on its way to minor units.
        data = json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(source, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEventError(source, f"expected a JSON object, got {type(data).__name__}")
    try:
        if kind is None:
            return _ANY_EVENT.validate_python(data)
        if data.get("type", kind) != kind:
            raise InvalidEventError(source, f"a {data['type']!r} event on the {kind!r} topic")
        event = _BY_KIND[kind].model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(source, describe(exc)) from exc
    if not isinstance(event, OrderEvent | AdSpendEvent | InventoryEvent):  # pragma: no cover
        raise InvalidEventError(source, f"unexpected event class {type(event).__name__}")
    return event


def describe(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `lines.0.quantity: Input should be greater than 0; ...`."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def encode(event: Event) -> bytes:
    """The wire form of an event (JSON, money as strings so no digit is lost)."""
    return event.model_dump_json().encode()


class RawRecord(BaseModel):
    """Undecoded bytes and where they came from (`topic/partition/offset` or `file:line`)."""

    model_config = ConfigDict(frozen=True)

    source: str
    value: bytes
    kind: EventKind | None = None
    def decode(self) -> Event:
        return self.event

    @functools.cached_property
    def event(self) -> Event:
        """The validated event, parsed once: a reader that checks records before handing them
        on (connectors.files) would otherwise have every event parsed twice."""
        return decode(self.value, self.source, self.kind)
