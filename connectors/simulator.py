"""Realistic-enough multi-store traffic with incidents in it, for demos and tests.

Deterministic for a seed: the same arguments give the same events, byte for byte. Sales follow a
daily curve in each marketplace's local time; ads spend per SKU per hour; inventory depletes with
sales and is reported every few hours. Two incidents are injected: one SKU sells out, and one
SKU's ads keep spending while its ad sales collapse (an ACoS spike).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

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
from streams.windows import marketplace_zone


@dataclass(frozen=True)
class Market:
    platform: Platform
    marketplace: str
    currency: str
    price: Decimal  # a typical unit price
    cpc: Decimal  # a typical cost per click


MARKETS: Final = (
    Market("amazon", "US", "USD", Decimal("24.99"), Decimal("0.55")),
    Market("amazon", "JP", "JPY", Decimal("2980"), Decimal("60")),
    Market("shopee", "MY", "MYR", Decimal("45.90"), Decimal("0.45")),
    Market("amazon", "US", "USD", Decimal("39.99"), Decimal("0.70")),
)


@dataclass
class _Sku:
    code: str
    price: Decimal
    stock: int
    spike: bool = False


@dataclass
class _Store:
    store_id: str
    market: Market
    skus: list[_Sku]


def simulate(
    start: datetime, hours: int = 48, stores: int = 3, skus: int = 4, seed: int = 7
) -> Iterator[Event]:
    """Events from `start` (timezone-aware) for `hours`, in event-time order."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
    shops = [_make_store(rng, index, skus) for index in range(stores)]
    # Hour h produces events up to two hours later (ad reports, cancellations) but none before
    # hour h: a heap lets everything earlier than the next hour go out in time order.
    pending: list[tuple[datetime, int, Event]] = []
    order = itertools.count()  # tie-breaker: events themselves are not orderable
    serial = 0
    for hour in range(hours + 3):
        moment = start + timedelta(hours=hour)
        if hour < hours:
            for event in _hour(rng, shops, moment, hour, hours):
                heapq.heappush(pending, (event.occurred_at, next(order), event))
        while pending and (hour >= hours or pending[0][0] < moment + timedelta(hours=1)):
            serial += 1
            event = heapq.heappop(pending)[2]
            yield event.model_copy(update={"event_id": f"sim-{seed}-{serial:08d}"})


def _hour(
    rng: random.Random, shops: list[_Store], moment: datetime, hour: int, hours: int
) -> list[Event]:
    batch: list[Event] = []
    for shop in shops:
        batch.extend(_orders(rng, shop, moment, hour, hours))
        batch.extend(_ads(rng, shop, moment, hour, hours))
        if hour % 4 == 3 or hour == hours - 1:
            batch.extend(_inventory(shop, moment + timedelta(minutes=59)))
    return batch


def _make_store(rng: random.Random, index: int, count: int) -> _Store:
    market = MARKETS[index % len(MARKETS)]
    exponent = minor_unit_exponent(market.currency)
    skus = []
    for number in range(count):
        price = (market.price * Decimal(rng.uniform(0.8, 1.5))).quantize(
            Decimal(1).scaleb(-exponent)
        )
        # Store 0's first SKU starts nearly sold out; store 1's second SKU gets the ACoS spike.
        stock = 25 if (index, number) == (0, 0) else rng.randint(400, 900)
        skus.append(_Sku(f"SKU-{index}{number:02d}", price, stock, spike=(index, number) == (1, 1)))
    platform_tag = f"{market.platform}-{market.marketplace.lower()}"
    return _Store(f"{platform_tag}-{index + 1:02d}", market, skus)


def _demand(shop: _Store, moment: datetime) -> float:
    """Orders per hour: low at night, peaks in the local evening."""
    local_hour = moment.astimezone(
        marketplace_zone(shop.market.platform, shop.market.marketplace)
    ).hour
    return 2.0 + 4.0 * max(0.0, math.sin((local_hour - 6) / 24 * 2 * math.pi))


def _base(shop: _Store, moment: datetime, event_id: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "occurred_at": moment,
        "platform": shop.market.platform,
        "marketplace": shop.market.marketplace,
        "store_id": shop.store_id,
    }


def _orders(
    rng: random.Random, shop: _Store, moment: datetime, hour: int, hours: int
) -> list[Event]:
    events: list[Event] = []
    count = _poisson(rng, _demand(shop, moment))
    for number in range(count):
        sku = rng.choice(shop.skus)
        if sku.stock <= 0:
            continue  # sold out: the listing stops selling
        quantity = min(sku.stock, rng.choice((1, 1, 1, 2, 3)))
        sku.stock -= quantity
        at = moment + timedelta(minutes=rng.randint(0, 58), seconds=rng.randint(0, 59))
        order_id = f"{shop.store_id}-{hour:04d}-{number:03d}"
        line = OrderLine(
            sku=sku.code,
            quantity=quantity,
            unit_price=Money(amount=sku.price, currency=shop.market.currency),
        )
        order = OrderEvent.model_validate(
            {
                **_base(shop, at, "-"),
                "order_id": order_id,
                "status": "placed",
                "lines": [line],
                "is_test": rng.random() < 0.01,
            }
        )
        events.append(order)
        if rng.random() < 0.03 and hour + 1 < hours:
            later = moment + timedelta(hours=1, minutes=rng.randint(0, 58))
            events.append(order.model_copy(update={"occurred_at": later, "status": "cancelled"}))
    return events


def _ads(rng: random.Random, shop: _Store, moment: datetime, hour: int, hours: int) -> list[Event]:
    events: list[Event] = []
    exponent = minor_unit_exponent(shop.market.currency)
    quantum = Decimal(1).scaleb(-exponent)
    spiking = hour >= hours // 2
    for sku in shop.skus:
        clicks = rng.randint(6, 16)
        impressions = clicks * rng.randint(40, 90)
        spend = (shop.market.cpc * clicks * Decimal(rng.uniform(0.8, 1.2))).quantize(quantum)
        conversion = 0.15
        if sku.spike and spiking:
            spend *= 3  # a bid war, or a broken bid rule, while the listing stops converting
            conversion = 0.02
        orders = sum(1 for _ in range(clicks) if rng.random() < conversion)
        sales = (sku.price * orders).quantize(quantum)
        end = moment + timedelta(hours=1)
        events.append(
            AdSpendEvent.model_validate(
                {
                    **_base(shop, end + timedelta(minutes=5), "-"),
                    "campaign_id": f"sp-{shop.store_id}-{sku.code}",
                    "sku": sku.code,
                    "interval_start": moment,
                    "interval_end": end,
                    "impressions": impressions,
                    "clicks": clicks,
                    "spend": Money(amount=spend, currency=shop.market.currency),
                    "attributed_sales": Money(amount=sales, currency=shop.market.currency),
                    "attributed_orders": orders,
                }
            )
        )
    return events


def _inventory(shop: _Store, at: datetime) -> list[Event]:
    return [
        InventoryEvent.model_validate(
            {
                **_base(shop, at, "-"),
                "sku": sku.code,
                "warehouse": "fba",
                "available": sku.stock,
                "inbound": 0,
                "as_of": at,
            }
        )
        for sku in shop.skus
    ]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is plenty for means below 10.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
