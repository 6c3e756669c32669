"""Realistic-enough multi-store traffic with incidents in it, for demos, backtests and tests.

Deterministic for a seed: the same arguments give the same events, byte for byte, and the same
incidents. Memory does not grow with `hours`: traffic is made hour by hour, and only what is
still due (ad reports, cancellations, returns, restocks) is held.

Traffic: N stores across marketplaces and time zones, each with its own currency. Orders follow
an hourly curve in the marketplace's local time (night trough, evening peak) and a weekly one
(weekends differ per marketplace); ads report per SKU per hour; inventory is snapshotted every
two hours, depletes with sales, and is reordered when it covers fewer than `REORDER_DAYS`: the
shipment shows as inbound for a lead time, then as available. About 0.6% of orders are cancelled
within hours and 1.5% returned days later; 1% are test orders.

Incidents (`Incident`), at `incident_rate` expected starts per store per day, one at a time per
store (with a day of calm after each, so what an alert answers to stays clear):

- stockout (24-72 hours): a stock count finds most units of a SKU unsellable and its
  replenishment is held: the SKU sells out within hours and is not restocked until the end;
- acos_spike: for 24-48 hours a campaign pays 2.5 times as much per click while its ad
  conversion falls to a quarter (a bid war, or a suppressed offer that still gets clicks);
- silent_feed: none of a store's events arrive for 4-6 hours (an expired token); it starts in
  the store's local business hours (08:00-16:00), where a silent feed is an anomaly;
- sales_cliff: a store's orders drop to 10-35% of usual for 24-36 hours (a lost Buy Box).

`showcase=True` adds two fixed incidents that `kpiwatch demo` relies on: the first store's first
SKU sells out from hour 6, and the second store's second SKU's ads spike from the middle of the
run to its end.

Marketplace time zones are those the engine counts days in (streams.windows, not imported here
because connectors depend on streams.events only; a test checks the two agree).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo

from streams.events import (
    AdSpendEvent,
    Event,
    InventoryEvent,
    Money,
    OrderEvent,
    OrderLine,
    Platform,
    minor_unit_exponent,
)

IncidentKind = Literal["stockout", "acos_spike", "silent_feed", "sales_cliff"]
INCIDENT_KINDS: Final[tuple[IncidentKind, ...]] = (
    "stockout",
    "acos_spike",
    "silent_feed",
    "sales_cliff",
)
DEFAULT_INCIDENT_RATE: Final = 0.05  # expected incidents per store per day
REORDER_DAYS: Final = 30  # reorder when available + inbound covers fewer days than this
SNAPSHOT_HOURS: Final = 2  # inventory snapshot cadence
CALM: Final = timedelta(hours=24)  # no new incident on a store this long after one ended

# Share of an average hour's orders per local clock hour (mean 1): a night trough, an evening
# peak, the shape marketplace sales reports show.
_SHAPE: Final = (
    0.60, 0.45, 0.38, 0.35, 0.36, 0.45, 0.60, 0.80, 0.95, 1.05, 1.10, 1.15,
    1.20, 1.15, 1.10, 1.10, 1.15, 1.25, 1.35, 1.50, 1.60, 1.55, 1.30, 0.95,
)  # fmt: skip
HOURLY: Final = tuple(w * len(_SHAPE) / sum(_SHAPE) for w in _SHAPE)


@dataclass(frozen=True)
class Market:
    platform: Platform
    marketplace: str
    currency: str
    price: Decimal  # a typical unit price
    cpc: Decimal  # a typical cost per click
    zone: str  # the zone the marketplace counts its days in
    weekend: float = 1.0  # Saturday and Sunday orders relative to a weekday


MARKETS: Final = (
    Market("amazon", "US", "USD", Decimal("24.99"), Decimal("0.35"), "America/Los_Angeles", 1.1),
    Market("amazon", "JP", "JPY", Decimal("2980"), Decimal("40"), "Asia/Tokyo", 1.15),
    Market("shopee", "MY", "MYR", Decimal("45.90"), Decimal("0.60"), "Asia/Kuala_Lumpur", 1.2),
    Market("shopee", "SG", "SGD", Decimal("19.90"), Decimal("0.28"), "Asia/Singapore", 1.2),
    Market("tiktok", "US", "USD", Decimal("19.99"), Decimal("0.30"), "America/New_York", 1.25),
    Market("shopify", "US", "USD", Decimal("39.99"), Decimal("0.60"), "America/New_York", 0.9),
    Market("walmart", "US", "USD", Decimal("29.99"), Decimal("0.40"), "America/New_York", 1.05),
    Market("rakuten", "JP", "JPY", Decimal("3980"), Decimal("50"), "Asia/Tokyo", 1.1),
)


@dataclass(frozen=True)
class Incident:
    """An injected incident: what the rules should notice, on which store (and SKU/campaign)."""

    kind: IncidentKind
    store_id: str
    start: datetime
    end: datetime
    sku: str | None = None
    campaign_id: str | None = None
    factor: float | None = None  # sales_cliff: the share of usual orders that still come

    def to_json(self) -> dict[str, str | float | None]:
        return {
            "kind": self.kind,
            "store_id": self.store_id,
            "sku": self.sku,
            "campaign_id": self.campaign_id,
            "factor": self.factor,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    def active(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass
class _Sku:
    code: str
    campaign_id: str
    price: Decimal
    weight: float  # share of the store's orders
    available: int
    clicks: float  # ad clicks per average hour
    inbound: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass
class _Store:
    index: int
    store_id: str
    market: Market
    zone: ZoneInfo
    rate: float  # orders per average hour
    skus: list[_Sku]
    incident: Incident | None = None
    silences: list[Incident] = field(default_factory=list)
    calm_until: datetime | None = None

    def daily_units(self, sku: _Sku) -> float:
        return self.rate * 24 * sku.weight * 1.4


@dataclass(frozen=True)
class _Plan:
    start: datetime
    hours: int
    seed: int
    rate: float
    window: tuple[datetime, datetime]
    on_incident: Callable[[Incident], None]


def simulate(
    start: datetime,
    hours: int = 48,
    stores: int = 3,
    skus: int = 4,
    seed: int = 7,
    *,
    incident_rate: float = DEFAULT_INCIDENT_RATE,
    showcase: bool = True,
    incident_window: tuple[datetime, datetime] | None = None,
    on_incident: Callable[[Incident], None] | None = None,
) -> Iterator[Event]:
    """Events from `start` (timezone-aware) for `hours`, in event-time order. `on_incident` is
    told of each incident when it starts. Random incidents start only inside `incident_window`
    (default: the whole run), so a test can give baselines their history first and leave the
    rules time to answer the last incident."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if incident_rate < 0:
        raise ValueError("incident_rate must be >= 0")
    rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
    shops = [_make_store(rng, index, skus) for index in range(stores)]
    told = on_incident or (lambda _: None)
    window = incident_window or (start, start + timedelta(hours=hours))
    plan = _Plan(start, hours, seed, incident_rate, window, told)
    scripted = _showcase(shops, start, hours) if showcase else []
    return _run(rng, shops, plan, scripted)


def _run(
    rng: random.Random, shops: list[_Store], plan: _Plan, scripted: list[Incident]
) -> Iterator[Event]:
    # Hour h produces events at or after hour h (ad reports, cancellations, returns come later):
    # a heap lets everything earlier than the next hour go out in time order.
    pending: list[tuple[datetime, int, Event]] = []
    order = itertools.count()  # tie-breaker: events themselves are not orderable
    by_id = {shop.store_id: shop for shop in shops}
    for hour in range(plan.hours):
        moment = plan.start + timedelta(hours=hour)
        for shop in shops:
            _begin_incidents(rng, shop, moment, plan, scripted)
            for event in _store_hour(rng, shop, moment, hour, plan):
                heapq.heappush(pending, (event.occurred_at, next(order), event))
        horizon = moment + timedelta(hours=1)
        while pending and pending[0][0] < horizon:
            yield from _deliver(by_id, heapq.heappop(pending)[2])
    # The last hour's ad reports come 5 minutes after it; what would come later (cancellations,
    # returns) is cut, so the run ends when its traffic does and no feed looks silent after it.
    end = plan.start + timedelta(hours=plan.hours, minutes=10)
    while pending and pending[0][0] < end:
        yield from _deliver(by_id, heapq.heappop(pending)[2])


def _deliver(shops: dict[str, _Store], event: Event) -> Iterator[Event]:
    """The event, unless its store's feed is silent at its time."""
    shop = shops[event.store_id]
    if shop.silences and shop.silences[0].end < event.occurred_at:
        shop.silences = [s for s in shop.silences if s.end >= event.occurred_at]
    if not any(s.active(event.occurred_at) for s in shop.silences):
        yield event


# ---------------------------------------------------------------- stores


def _make_store(rng: random.Random, index: int, count: int) -> _Store:
    market = MARKETS[index % len(MARKETS)]
    store_id = f"{market.platform}-{market.marketplace.lower()}-{index + 1:02d}"
    rate = rng.uniform(4.0, 7.0)
    weights = [rng.uniform(0.4, 1.0) for _ in range(count)]
    skus = [
        _make_sku(rng, market, store_id, index, number, rate * 24 * w / sum(weights) * 1.4)
        for number, w in enumerate(weights)
    ]
    for sku, w in zip(skus, weights, strict=True):
        sku.weight = w / sum(weights)
    return _Store(index, store_id, market, ZoneInfo(market.zone), rate, skus)


def _make_sku(
    rng: random.Random, market: Market, store_id: str, index: int, number: int, daily: float
) -> _Sku:
    exponent = minor_unit_exponent(market.currency)
    price = (market.price * Decimal(str(round(rng.uniform(0.8, 1.5), 3)))).quantize(
        Decimal(1).scaleb(-exponent)
    )
    code = f"SKU-{index}{number:02d}"
    return _Sku(
        code=code,
        campaign_id=f"sp-{store_id}-{code}",
        price=price,
        weight=0.0,
        available=int(daily * rng.uniform(35, 55)),
        clicks=rng.uniform(8, 16),
    )


def _demand(shop: _Store, moment: datetime) -> float:
    """Orders expected in the hour starting at `moment`, in the store's local time."""
    local = moment.astimezone(shop.zone)
    weekly = shop.market.weekend if local.weekday() >= 5 else 1.0
    factor = 1.0
    incident = shop.incident
    if incident is not None and incident.factor is not None and incident.active(moment):
        factor = incident.factor
    return shop.rate * HOURLY[local.hour] * weekly * factor


def _base(shop: _Store, moment: datetime, event_id: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "occurred_at": moment,
        "platform": shop.market.platform,
        "marketplace": shop.market.marketplace,
        "store_id": shop.store_id,
    }


def _store_hour(
    rng: random.Random, shop: _Store, moment: datetime, hour: int, plan: _Plan
) -> list[Event]:
    events = _orders(rng, shop, moment, hour, plan.seed)
    events.extend(_ads(rng, shop, moment, plan.seed))
    _restock(rng, shop, moment)
    if hour % SNAPSHOT_HOURS == SNAPSHOT_HOURS - 1:
        events.extend(_inventory(shop, moment + timedelta(minutes=59), plan.seed))
    return events


# ---------------------------------------------------------------- orders


def _orders(
    rng: random.Random, shop: _Store, moment: datetime, hour: int, seed: int
) -> list[Event]:
    events: list[Event] = []
    for number in range(_poisson(rng, _demand(shop, moment))):
        lines = _basket(rng, shop)
        if not lines:
            continue  # what the buyer wanted is sold out: the listing does not sell
        at = moment + timedelta(seconds=rng.randint(0, 3599))
        order_id = f"{seed}-{hour:05d}-{number:03d}"
        order = OrderEvent.model_validate(
            {
                **_base(shop, at, f"sim:{shop.store_id}:order:{order_id}:placed"),
                "order_id": order_id,
                "status": "placed",
                "lines": lines,
                "fulfillment_channel": "marketplace"
                if shop.market.platform == "amazon"
                else "merchant",
                "is_test": rng.random() < 0.01,
            }
        )
        events.append(order)
        events.extend(_aftermath(rng, order))
    return events


def _basket(rng: random.Random, shop: _Store) -> list[OrderLine]:
    """One SKU, sometimes two; each line takes units from stock."""
    picks = {_pick(rng, shop).code: None for _ in range(2 if rng.random() < 0.1 else 1)}
    lines = []
    for code in picks:
        sku = next(s for s in shop.skus if s.code == code)
        quantity = min(sku.available, rng.choice((1, 1, 1, 1, 2, 2, 3)))
        if quantity <= 0:
            continue
        sku.available -= quantity
        price = Money(amount=sku.price, currency=shop.market.currency)
        lines.append(OrderLine(sku=sku.code, quantity=quantity, unit_price=price))
    return lines


def _pick(rng: random.Random, shop: _Store) -> _Sku:
    return rng.choices(shop.skus, weights=[s.weight for s in shop.skus])[0]


def _aftermath(rng: random.Random, order: OrderEvent) -> list[Event]:
    """A cancellation within hours, or a return days later, of some orders."""
    draw = rng.random()
    if draw < 0.006:
        status, later = "cancelled", timedelta(minutes=rng.randint(20, 360))
    elif draw < 0.021:
        status, later = "returned", timedelta(hours=rng.randint(72, 240))
    else:
        return []
    event_id = f"sim:{order.store_id}:order:{order.order_id}:{status}"
    update = {"occurred_at": order.occurred_at + later, "status": status, "event_id": event_id}
    return [order.model_copy(update=update)]


# ---------------------------------------------------------------- ads


def _ads(rng: random.Random, shop: _Store, moment: datetime, seed: int) -> list[Event]:
    events: list[Event] = []
    local = moment.astimezone(shop.zone)
    for sku in shop.skus:
        if sku.available <= 0:
            continue  # marketplaces stop serving ads for a listing that cannot sell
        clicks = _poisson(rng, sku.clicks * HOURLY[local.hour])
        if clicks:
            events.append(_ad_report(rng, shop, sku, moment, clicks, seed))
    return events


def _ad_report(
    rng: random.Random, shop: _Store, sku: _Sku, moment: datetime, clicks: int, seed: int
) -> AdSpendEvent:
    quantum = Decimal(1).scaleb(-minor_unit_exponent(shop.market.currency))
    cpc, conversion = shop.market.cpc, 0.13
    if _affects(shop, "acos_spike", sku, moment):
        cpc, conversion = cpc * Decimal("2.5"), 0.03
    spend = (cpc * clicks * Decimal(str(round(rng.uniform(0.85, 1.15), 3)))).quantize(quantum)
    orders = sum(1 for _ in range(clicks) if rng.random() < conversion)
    units = sum(rng.choice((1, 1, 1, 2)) for _ in range(orders))
    end = moment + timedelta(hours=1)
    start_text = moment.isoformat()
    return AdSpendEvent.model_validate(
        {
            **_base(shop, end + timedelta(minutes=5), f"sim-{seed}:{sku.campaign_id}:{start_text}"),
            "campaign_id": sku.campaign_id,
            "sku": sku.code,
            "interval_start": moment,
            "interval_end": end,
            "impressions": clicks * rng.randint(40, 90),
            "clicks": clicks,
            "spend": Money(amount=spend, currency=shop.market.currency),
            "attributed_sales": Money(amount=sku.price * units, currency=shop.market.currency),
            "attributed_orders": orders,
        }
    )


# ---------------------------------------------------------------- inventory


def _restock(rng: random.Random, shop: _Store, moment: datetime) -> None:
    """Shipments that arrived become available; SKUs below the reorder point get one ordered
    (unless a stockout incident holds its replenishment)."""
    for sku in shop.skus:
        arrived = sum(qty for at, qty in sku.inbound if at <= moment)
        sku.inbound = [(at, qty) for at, qty in sku.inbound if at > moment]
        sku.available += arrived
        if _affects(shop, "stockout", sku, moment):
            continue
        daily = shop.daily_units(sku)
        if sku.available + sum(qty for _, qty in sku.inbound) < daily * REORDER_DAYS:
            lead = timedelta(hours=rng.randint(5 * 24, 8 * 24))
            sku.inbound.append((moment + lead, int(daily * rng.uniform(25, 35))))


def _affects(shop: _Store, kind: IncidentKind, sku: _Sku, moment: datetime) -> bool:
    """Whether the store's incident is of `kind`, on `sku`, at `moment`."""
    incident = shop.incident
    return (
        incident is not None
        and incident.kind == kind
        and incident.sku == sku.code
        and incident.active(moment)
    )


def _inventory(shop: _Store, at: datetime, seed: int) -> list[Event]:
    warehouse = "fba" if shop.market.platform == "amazon" else "3pl"
    return [
        InventoryEvent.model_validate(
            {
                **_base(shop, at, f"sim-{seed}:{shop.store_id}:stock:{sku.code}:{at.isoformat()}"),
                "sku": sku.code,
                "warehouse": warehouse,
                "available": sku.available,
                "inbound": sum(qty for _, qty in sku.inbound),
                "as_of": at,
            }
        )
        for sku in shop.skus
    ]


# ---------------------------------------------------------------- incidents


def _showcase(shops: list[_Store], start: datetime, hours: int) -> list[Incident]:
    end = start + timedelta(hours=hours)
    scripted = []
    if shops and shops[0].skus:
        first = shops[0].skus[0]
        at = start + timedelta(hours=min(6, hours // 2))
        scripted.append(Incident("stockout", shops[0].store_id, at, end, sku=first.code))
    if len(shops) > 1 and len(shops[1].skus) > 1:
        second = shops[1].skus[1]
        at = start + timedelta(hours=hours // 2)
        scripted.append(
            Incident(
                "acos_spike",
                shops[1].store_id,
                at,
                end,
                sku=second.code,
                campaign_id=second.campaign_id,
            )
        )
    return scripted


def _begin_incidents(
    rng: random.Random, shop: _Store, moment: datetime, plan: _Plan, scripted: list[Incident]
) -> None:
    """End the store's incident when it is over; start a scripted or a random one."""
    if shop.incident is not None and shop.incident.end <= moment:
        shop.calm_until = shop.incident.end + CALM
        shop.incident = None
    due = next((i for i in scripted if i.store_id == shop.store_id and i.start == moment), None)
    if due is None and _may_start(shop, moment, plan):
        due = _draw(rng, shop, moment, plan.rate)
    if due is not None:
        _start(shop, due)
        plan.on_incident(due)


def _may_start(shop: _Store, moment: datetime, plan: _Plan) -> bool:
    calm = shop.calm_until is None or moment >= shop.calm_until
    inside = plan.window[0] <= moment < plan.window[1]
    return calm and inside and shop.incident is None


def _draw(rng: random.Random, shop: _Store, moment: datetime, rate: float) -> Incident | None:
    """Each kind starts with a quarter of `rate` per day; a silent feed only in the 8 local
    hours from 08:00, so its daily chance is spread over those."""
    if rate <= 0:
        return None
    local_hour = moment.astimezone(shop.zone).hour
    kind = rng.choice(INCIDENT_KINDS)
    hours = 8 if kind == "silent_feed" else 24
    if kind == "silent_feed" and not 8 <= local_hour < 16:
        return None
    if rng.random() >= rate / hours:
        return None
    return _incident(rng, shop, moment, kind)


def _incident(rng: random.Random, shop: _Store, moment: datetime, kind: IncidentKind) -> Incident:
    sku = max(shop.skus, key=lambda s: (s.available > 0, rng.random()))
    if kind == "stockout":
        return Incident(kind, shop.store_id, moment, _after(rng, moment, 24, 72), sku=sku.code)
    if kind == "acos_spike":
        end = _after(rng, moment, 24, 48)
        return Incident(kind, shop.store_id, moment, end, sku=sku.code, campaign_id=sku.campaign_id)
    if kind == "silent_feed":
        at = moment + timedelta(minutes=rng.randint(0, 59))
        return Incident(kind, shop.store_id, at, at + timedelta(minutes=rng.randint(240, 360)))
    factor = round(rng.uniform(0.10, 0.35), 2)
    return Incident(kind, shop.store_id, moment, _after(rng, moment, 24, 36), factor=factor)


def _after(rng: random.Random, moment: datetime, low: int, high: int) -> datetime:
    return moment + timedelta(hours=rng.randint(low, high))


def _start(shop: _Store, incident: Incident) -> None:
    shop.incident = incident
    if incident.kind == "silent_feed":
        shop.silences.append(incident)
    if incident.kind == "stockout":
        sku = next(s for s in shop.skus if s.code == incident.sku)
        hourly = shop.daily_units(sku) / 24
        # What the stock count leaves: a few hours of sales, and the shipment on its way is held.
        sku.available = min(sku.available, max(12, int(hourly * 4)))
        sku.inbound = []


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is plenty for the small means of one store-hour.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
