"""The event contract: what connectors put on the Kafka topics, validated the same way everywhere.

Events are JSON on the wire, keyed by `store_id` so one store's events keep their order on one
partition. All kinds go to one topic, `events`, so that a store's orders, ad reports and stock
snapshots are read in the order they were produced (the per-kind topics `orders`, `ad-spend` and
`inventory` are still read, for producers written before). A message holds one event (a JSON
object) or several events of one store (a JSON array, see `pack`): Kafka costs the worker about
as much per message as the whole rest of an event's processing, so producers that have events in
groups (an API page, a file, a burst of webhooks) send them together.

Anything that does not validate raises `InvalidEventError` with a reason a person can act on;
callers dead-letter it (one event of a message at a time) and carry on.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

import iso4217
import pydantic_core
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rules.errors import InvalidEventError

Platform = Literal["amazon", "walmart", "shopify", "shopee", "lazada", "tiktok", "rakuten", "yahoo"]
EventKind = Literal["order", "ad_spend", "inventory", "feed"]
OrderStatus = Literal["placed", "shipped", "delivered", "cancelled", "returned", "refunded"]
# The feeds a connector reads for a store; a FeedEvent reports on one of them.
FeedName = Literal["orders", "ads", "inventory"]

# The topic every kind of event goes to (before any deployment prefix).
EVENTS_TOPIC: Final = "events"
# The per-kind topics of the first event contract, still read: an event on them may leave out
# `type`, which the topic gives. Their kinds are read in arrival order, not produce order.
TOPICS: Final[dict[EventKind, str]] = {
    "order": "orders",
    "ad_spend": "ad-spend",
    "inventory": "inventory",
}

# Bounds that no real event crosses: beyond them a producer has a bug (cents sent as units,
# an epoch in milliseconds read as seconds), and counting the event would poison the KPIs.
MAX_AMOUNT: Final = Decimal("100000000")
MAX_QUANTITY: Final = 100_000
MAX_LINES: Final = 1_000
MAX_COUNT: Final = 10**12  # impressions, clicks, attributed orders of one report
MIN_YEAR, MAX_YEAR = 2000, 2100
# A reason quotes what it refused: a 1 MiB currency code must not make a 1 MiB reason.
MAX_REASON: Final = 500

# No control characters: ids go into table keys joined by one (streams.kpi.SEP), and into logs.
Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _sane_time(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} is outside {MIN_YEAR}..{MAX_YEAR}")
    return value


def _not_bool(value: Any) -> Any:
    # pydantic reads JSON true as 1: a flag where a count belongs is a producer's bug.
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true or false")
    return value


# Every timestamp, not only occurred_at: a stock snapshot "as of" year 9999 would otherwise win
# over every real one, and an ad interval in year 1 would be bucketed there.
Moment = Annotated[AwareDatetime, AfterValidator(_sane_time)]
Count = Annotated[NonNegativeInt, BeforeValidator(_not_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(_Strict):
    """An amount in one ISO 4217 currency; never a float."""

    amount: Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
    currency: str

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, float):
            return value
        if info.mode == "json":
            # A JSON number, parsed through a double: its shortest form is the number as
            # written for every amount within bounds (at most 15 significant digits).
            return Decimal(repr(value))
        # A Python float has already lost the cent; insist on a string or an integer.
        raise ValueError('amount must be a string or an integer, not a float (e.g. "12.34")')

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
    quantity: Annotated[PositiveInt, BeforeValidator(_not_bool), Field(le=MAX_QUANTITY)]
    unit_price: Money


class OrderEvent(EventBase):
    type: Literal["order"] = "order"
    order_id: Text
    status: OrderStatus
    # Empty only for a cancellation: a platform may report a cancelled order without its
    # lines (Amazon: QuantityOrdered 0); it still takes the order out of its day.
    lines: Annotated[list[OrderLine], Field(max_length=MAX_LINES)]
    fulfillment_channel: Literal["marketplace", "merchant"] = "merchant"
    ship_by: Moment | None = None
    shipped_at: Moment | None = None
    # When the buyer placed the order, if the platform says (Amazon's PurchaseDate): the order
    # counts in that hour and day; occurred_at stays the version (the newest status wins).
    placed_at: Moment | None = None
    # Test and brushing orders are recorded but never counted in a KPI.
    is_test: bool = False

    @model_validator(mode="after")
    def _one_currency(self) -> OrderEvent:
        if not self.lines and self.status != "cancelled":
            raise ValueError("lines: an order needs at least one line unless it is cancelled")
        currencies = {line.unit_price.currency for line in self.lines}
        if len(currencies) > 1:
            raise ValueError(f"order lines mix currencies {sorted(currencies)}")
        return self

    @property
    def currency(self) -> str:
        """The lines' currency; "" for a cancellation that carries no lines."""
        return self.lines[0].unit_price.currency if self.lines else ""


class AdSpendEvent(EventBase):
    type: Literal["ad_spend"] = "ad_spend"
    campaign_id: Text
    sku: Text | None = None
    interval_start: Moment
    interval_end: Moment
    impressions: Annotated[Count, Field(le=MAX_COUNT)]
    clicks: Annotated[Count, Field(le=MAX_COUNT)]
    spend: Money
    attributed_sales: Money
    attributed_orders: Annotated[Count, Field(le=MAX_COUNT)]

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
    available: Annotated[Count, Field(le=10_000_000)]
    inbound: Annotated[Count, Field(le=10_000_000)] = 0
    reserved: Annotated[Count, Field(le=10_000_000)] = 0
    as_of: Moment


class FeedEvent(EventBase):
    """A connector's report on one pass over one store's feed: `ok` (the feed was read up to
    now, whatever it held) or `failed` (with the reason). It carries no sales: it lets rules
    tell "the feed is broken" from "the store sold nothing", and marks when a store's feed
    began, so that silence is only judged once a feed has been watched long enough."""

    type: Literal["feed"] = "feed"
    feed: FeedName
    status: Literal["ok", "failed"]
    reason: Annotated[str, Field(max_length=MAX_REASON)] | None = None


Event = OrderEvent | AdSpendEvent | InventoryEvent | FeedEvent
_Tagged = Annotated[Event, Field(discriminator="type")]
_ANY_EVENT: Final[TypeAdapter[Event]] = TypeAdapter(_Tagged)
_MANY_EVENTS: Final[TypeAdapter[list[Event]]] = TypeAdapter(list[_Tagged])
_BY_KIND: Final[dict[EventKind, TypeAdapter[Any]]] = {
    "order": TypeAdapter(OrderEvent),
    "ad_spend": TypeAdapter(AdSpendEvent),
    "inventory": TypeAdapter(InventoryEvent),
    "feed": TypeAdapter(FeedEvent),
}


def decode(raw: bytes | str, source: str, kind: EventKind | None = None) -> Event:
    """Parse and validate one event; `kind` is fixed by a per-kind topic, else read from `type`.

    JSON numbers are read through a double, which is exact for every amount an event may carry
    (at most 100,000,000 with the currency's minor digits); money written as strings is exact
    whatever it is. Raises InvalidEventError naming `source` (topic/partition/offset or
    file:line) and the reason.
    """
    try:
        if kind is None:
            return _ANY_EVENT.validate_json(raw)
        event: Event = _BY_KIND[kind].validate_json(raw)
    except ValidationError as exc:
        raise InvalidEventError(source, _clip(_reason(exc, raw, kind))) from exc
    return event


def _clip(reason: str) -> str:
    """A reason fit to print: it quotes the event, whose keys and values may hold control
    characters (a terminal acts on them) and be of any length."""
    reason = _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", reason)
    if len(reason) <= MAX_REASON:
        return reason
    return f"{reason[:MAX_REASON]}... ({len(reason)} characters)"


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def decode_message(
    raw: bytes | None, source: str, kind: EventKind | None = None
) -> list[Event | InvalidEventError]:
    """The events of one Kafka message: a JSON object is one event, a JSON array several (of
    one store). A bad element is an InvalidEventError in its place, its source ending in
    `#<index>`; the valid ones around it are kept. One validation pass for the common case."""
    if raw is None or raw.lstrip()[:1] != b"[":
        try:
            return [decode(raw if raw is not None else b"", source, kind)]
        except InvalidEventError as exc:
            return [exc]
    try:
        if kind is None:
            return list(_MANY_EVENTS.validate_json(raw))
    except ValidationError:
        pass  # one bad element (or bad JSON): judge each element on its own below
    return _each_element(raw, source, kind)


def _each_element(
    raw: bytes, source: str, kind: EventKind | None
) -> list[Event | InvalidEventError]:
    try:
        items = pydantic_core.from_json(raw)
    except ValueError as exc:
        return [InvalidEventError(source, f"not valid JSON: {exc}")]
    found: list[Event | InvalidEventError] = []
    for index, item in enumerate(items):
        where = f"{source}#{index}"
        try:
            found.append(decode(pydantic_core.to_json(item), where, kind))
        except InvalidEventError as exc:
            found.append(exc)
    return found


def _reason(exc: ValidationError, raw: bytes | str, kind: EventKind | None) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0] if errors else None
    if first is not None and first["type"] == "json_invalid":
        return f"not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    if first is not None and not first["loc"] and first["type"] in _NOT_AN_OBJECT:
        return f"expected a JSON object, got {_json_kind(raw)}"
    for error in errors:
        if kind is not None and error["loc"] == ("type",) and error["type"] == "literal_error":
            return f"a {error['input']!r} event on the {kind!r} topic"
        if error["type"] == "union_tag_not_found":
            return f"type: missing; say which event this is: {', '.join(map(repr, KINDS))}"
        if error["type"] == "union_tag_invalid":
            found = error.get("ctx", {}).get("tag")
            return f"type: {found!r} is not one of {', '.join(map(repr, KINDS))}"
    return describe(exc)


_NOT_AN_OBJECT: Final = ("model_type", "model_attributes_type", "dict_type")
KINDS: Final[tuple[EventKind, ...]] = ("order", "ad_spend", "inventory", "feed")


def _json_kind(raw: bytes | str) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return "something else"
    return {list: "list", str: "str", int: "int", float: "float", bool: "bool"}.get(
        type(value), type(value).__name__
    )


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


def encode_message(events: Sequence[Event]) -> bytes:
    """One Kafka message: a single event as an object, several (of one store) as an array."""
    if len(events) == 1:
        return encode(events[0])
    return _MANY_EVENTS.dump_json(list(events))


# A packed message holds at most this many events, and this many events plus order lines, so
# that it stays well under Kafka's 1 MiB message limit whatever the events hold.
PACK_EVENTS: Final = 500
PACK_WEIGHT: Final = 1_000


def weight(event: Event) -> int:
    return 1 + (len(event.lines) if isinstance(event, OrderEvent) else 0)


def pack(
    events: Iterable[Event], max_events: int = PACK_EVENTS, max_weight: int = PACK_WEIGHT
) -> Iterator[list[Event]]:
    """Group a stream of events into messages: each store's events in order, one group per store
    until the stream's event time reaches the next whole UTC hour (or the group is full).

    A pure function of the sequence: `kpiwatch produce` and `kpiwatch replay` group a file the
    same way, and rules judge a store after each group, so both runtimes see the same moments.
    Groups come out in the order they were started; a store's groups in its own order. Closing
    every group at the hour keeps a time-ordered stream in time order from hour to hour, which
    the no-data and rollup judgments at whole hours rely on."""
    open_groups: dict[str, list[Event]] = {}
    weights: dict[str, int] = {}
    hour: int | None = None
    for event in events:
        moment = int(event.occurred_at.timestamp()) // 3600
        if hour is not None and moment > hour:
            yield from open_groups.values()
            open_groups.clear()
            weights.clear()
        hour = moment if hour is None else max(hour, moment)
        store = event.store_id
        group = open_groups.get(store)
        if group is not None and (
            len(group) >= max_events or weights[store] + weight(event) > max_weight
        ):
            yield open_groups.pop(store)
            group = None
        if group is None:
            group = open_groups[store] = []
            weights[store] = 0
        group.append(event)
        weights[store] += weight(event)
    yield from open_groups.values()


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
