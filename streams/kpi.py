"""KPI aggregation: events in, counters per (scope, window) updated, Snapshots out.

State lives in five MutableMappings of JSON-able values: Faust tables in the Kafka runtime,
dicts in the embedded one. Every write is a whole-value assignment, which is what makes a Faust
table record it in its changelog.

Orders and ad intervals go through a ledger: what an order (or an ad interval) contributes is
remembered, and a later event for the same order or interval replaces that contribution in its
original bucket instead of adding to it: a cancellation undoes a sale on the day it was placed,
an Amazon Ads restatement replaces the earlier figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from rules.kpis import SKU, STORE, Snapshot, Window, ratio
from streams.events import AdSpendEvent, Event, InventoryEvent, OrderEvent, minor_unit_exponent
from streams.windows import local_day, marketplace_zone

Table = MutableMapping[str, Any]
Counters = dict[str, int]

ORDER_KPIS: Final = ("gmv", "orders", "units")
AD_KPIS: Final = ("ad_spend", "ad_sales", "clicks", "impressions", "acos")


@dataclass
class State:
    """Everything the pipeline remembers; the names are the Faust table names too."""

    seen: Table = field(default_factory=dict)
    ledger: Table = field(default_factory=dict)
    buckets: Table = field(default_factory=dict)
    inventory: Table = field(default_factory=dict)
    alerts: Table = field(default_factory=dict)


def key(*parts: str) -> str:
    """An unambiguous table key from parts that may themselves contain any character."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


def apply_event(state: State, event: Event) -> list[Snapshot]:
    """Fold one event into the state; return the snapshots whose values it changed."""
    seen_key = key(event.platform, event.marketplace, event.store_id, event.event_id)
    if seen_key in state.seen:
        return []
    state.seen[seen_key] = event.occurred_at.isoformat()
    if isinstance(event, OrderEvent):
        return _apply_order(state, event)
    if isinstance(event, AdSpendEvent):
        return _apply_ad(state, event)
    return _apply_inventory(state, event)


def order_contribution(event: OrderEvent) -> Counters:
    """What one order counts for in its bucket, given its latest status."""
    if event.is_test:
        return {}
    if event.status == "cancelled":
        return {"cancelled_orders": 1}
    gmv = sum(line.unit_price.minor_units() * line.quantity for line in event.lines)
    return {
        "orders": 1,
        "units": sum(line.quantity for line in event.lines),
        f"gmv:{event.currency}": gmv,
    }


def ad_contribution(event: AdSpendEvent) -> Counters:
    currency = event.spend.currency
    return {
        f"ad_spend:{currency}": event.spend.minor_units(),
        f"ad_sales:{currency}": event.attributed_sales.minor_units(),
        "clicks": event.clicks,
        "impressions": event.impressions,
        "ad_orders": event.attributed_orders,
    }


def _apply_order(state: State, event: OrderEvent) -> list[Snapshot]:
    window, zone = _day(event, event.occurred_at)
    bucket = _bucket_key(STORE, event, None, window)
    _ensure_bucket(state, bucket, _labels(event, None), window, zone)
    ledger_key = key("order", event.platform, event.marketplace, event.store_id, event.order_id)
    touched = _settle(state, ledger_key, [bucket], order_contribution(event))
    return [_snapshot(state, b, ORDER_KPIS, event.occurred_at) for b in touched]


def _apply_ad(state: State, event: AdSpendEvent) -> list[Snapshot]:
    window, zone = _day(event, event.interval_start)
    buckets = [_bucket_key(STORE, event, None, window)]
    _ensure_bucket(state, buckets[0], _labels(event, None), window, zone)
    if event.sku is not None:
        buckets.append(_bucket_key(SKU, event, event.sku, window))
        _ensure_bucket(state, buckets[1], _labels(event, event.sku), window, zone)
    ledger_key = key(
        "ad",
        event.platform,
        event.marketplace,
        event.store_id,
        event.campaign_id,
        event.sku or "",
        event.interval_start.isoformat(),
        event.interval_end.isoformat(),
    )
    touched = _settle(state, ledger_key, buckets, ad_contribution(event))
    return [_snapshot(state, b, AD_KPIS, event.occurred_at) for b in touched]


def _apply_inventory(state: State, event: InventoryEvent) -> list[Snapshot]:
    sku_key = key(event.platform, event.marketplace, event.store_id, event.sku)
    record = state.inventory.get(sku_key) or {"labels": _labels(event, event.sku), "warehouses": {}}
    previous = record["warehouses"].get(event.warehouse)
    if previous is not None and datetime.fromisoformat(previous["as_of"]) > event.as_of:
        return []  # an older snapshot arriving late: the latest as_of wins
    warehouses = {
        **record["warehouses"],
        event.warehouse: {
            "available": event.available,
            "inbound": event.inbound,
            "reserved": event.reserved,
            "as_of": event.as_of.isoformat(),
        },
    }
    state.inventory[sku_key] = {"labels": record["labels"], "warehouses": warehouses}
    values = {
        "available": Decimal(sum(w["available"] for w in warehouses.values())),
        "inbound": Decimal(sum(w["inbound"] for w in warehouses.values())),
    }
    zone = marketplace_zone(event.platform, event.marketplace)
    return [Snapshot(SKU, record["labels"], values, event.occurred_at, zone=zone.key)]


def _settle(state: State, ledger_key: str, buckets: list[str], contribution: Counters) -> list[str]:
    """Replace what `ledger_key` contributed before with `contribution`; return changed buckets."""
    entry = state.ledger.get(ledger_key)
    targets: list[str] = entry["buckets"] if entry else buckets
    previous: Counters = entry["contrib"] if entry else {}
    delta = {
        name: contribution.get(name, 0) - previous.get(name, 0)
        for name in contribution.keys() | previous.keys()
    }
    delta = {name: change for name, change in delta.items() if change}
    state.ledger[ledger_key] = {"buckets": targets, "contrib": contribution}
    if not delta:
        return []
    for bucket_key in targets:
        bucket = state.buckets[bucket_key]
        counters = dict(bucket["counters"])
        for name, change in delta.items():
            counters[name] = counters.get(name, 0) + change
        state.buckets[bucket_key] = {**bucket, "counters": counters}
    return targets


def kpi_values(
    counters: Mapping[str, int], names: Iterable[str]
) -> tuple[dict[str, Decimal | None], str | None]:
    """KPI values from a bucket's counters, and the currency its money is in."""
    currencies = {name.split(":", 1)[1] for name in counters if ":" in name}
    currency = next(iter(currencies)) if len(currencies) == 1 else None
    values: dict[str, Decimal | None] = {}
    for name in names:
        values[name] = _kpi(name, counters, currency, mixed=len(currencies) > 1)
    return values, currency


def _kpi(
    name: str, counters: Mapping[str, int], currency: str | None, mixed: bool
) -> Decimal | None:
    if name == "acos":
        if mixed or currency is None:
            return None
        return ratio(
            counters.get(f"ad_spend:{currency}", 0), counters.get(f"ad_sales:{currency}", 0)
        )
    if name in ("gmv", "ad_spend", "ad_sales"):
        if mixed:
            return None  # never add yen to dollars
        if currency is None:
            return Decimal(0)
        return Decimal(counters.get(f"{name}:{currency}", 0)).scaleb(-minor_unit_exponent(currency))
    return Decimal(counters.get(name, 0))


def _snapshot(state: State, bucket_key: str, names: Iterable[str], at: datetime) -> Snapshot:
    bucket = state.buckets[bucket_key]
    values, currency = kpi_values(bucket["counters"], names)
    start, end, label = bucket["window"]
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end), label)
    return Snapshot(
        level=frozenset(bucket["level"]),
        labels=bucket["labels"],
        values=values,
        at=at,
        window=window,
        currency=currency,
        zone=bucket["zone"],
    )


def _day(event: Event, moment: datetime) -> tuple[Window, str]:
    zone = marketplace_zone(event.platform, event.marketplace)
    return local_day(moment, zone), zone.key


def _labels(event: Event, sku: str | None) -> dict[str, str]:
    labels = {"platform": event.platform, "marketplace": event.marketplace, "store": event.store_id}
    if sku is not None:
        labels["sku"] = sku
    return labels


def _bucket_key(level: frozenset[str], event: Event, sku: str | None, window: Window) -> str:
    return key(
        "+".join(sorted(level)),
        event.platform,
        event.marketplace,
        event.store_id,
        sku or "",
        window.label,
    )


def _ensure_bucket(
    state: State, bucket_key: str, labels: dict[str, str], window: Window, zone: str
) -> None:
    """Create the bucket with what describes it (labels, window, zone); its level follows labels."""
    if bucket_key not in state.buckets:
        state.buckets[bucket_key] = {
            "level": sorted(SKU if "sku" in labels else STORE),
            "labels": labels,
            "window": [window.start.isoformat(), window.end.isoformat(), window.label],
            "zone": zone,
            "counters": {},
        }
