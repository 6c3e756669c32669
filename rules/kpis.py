"""The KPI catalog as rules see it: names, units, the scopes each KPI exists at, and windows.

Rule files are checked against this at load time; the aggregation in `streams.kpi` produces
values under exactly these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

Unit = Literal["ratio", "money", "count"]
ScopeLabel = Literal["platform", "marketplace", "store", "sku"]

STORE: Final = frozenset({"store"})
SKU: Final = frozenset({"store", "sku"})


@dataclass(frozen=True)
class KpiSpec:
    name: str
    unit: Unit
    levels: frozenset[frozenset[str]]
    windowed: bool
    help: str


def _spec(name: str, unit: Unit, levels: set[frozenset[str]], windowed: bool, help: str) -> KpiSpec:
    return KpiSpec(name, unit, frozenset(levels), windowed, help)


CATALOG: Final[Mapping[str, KpiSpec]] = {
    spec.name: spec
    for spec in (
        _spec("gmv", "money", {STORE}, True, "sales of counted order lines"),
        _spec("orders", "count", {STORE}, True, "counted orders"),
        _spec("units", "count", {STORE}, True, "units in counted orders"),
        _spec("ad_spend", "money", {STORE, SKU}, True, "advertising spend"),
        _spec("ad_sales", "money", {STORE, SKU}, True, "sales attributed to ads"),
        _spec("clicks", "count", {STORE, SKU}, True, "ad clicks"),
        _spec("impressions", "count", {STORE, SKU}, True, "ad impressions"),
        _spec("acos", "ratio", {STORE, SKU}, True, "ad_spend / ad_sales"),
        _spec("available", "count", {SKU}, False, "sellable units, all warehouses"),
        _spec("inbound", "count", {SKU}, False, "units on their way to a warehouse"),
    )
}

# Labels that every scope carries: a store id is only unique within its platform and marketplace.
IMPLICIT_LABELS: Final = ("platform", "marketplace")


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of event time and the local period it stands for."""

    start: datetime
    end: datetime
    label: str


@dataclass(frozen=True)
class Snapshot:
    """The KPI values of one scope (and window) right after an event changed them.

    A value of None means "undefined" (a zero denominator): never 0, never an error.
    """

    level: frozenset[str]
    labels: Mapping[str, str]
    values: Mapping[str, Decimal | None]
    at: datetime
    window: Window | None = None
    currency: str | None = None
    zone: str = "UTC"
    extra: Mapping[str, str] = field(default_factory=dict)


RATIO_QUANTUM: Final = Decimal("0.000001")


def ratio(numerator: int | Decimal, denominator: int | Decimal) -> Decimal | None:
    """numerator / denominator to six decimals, or None (undefined) when the denominator is 0."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATIO_QUANTUM)
