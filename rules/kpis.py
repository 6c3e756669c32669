"""The KPI catalog as rules see it: names, units, the scope levels and windows each KPI has.

Rule files are checked against this at load time; `streams.kpi` produces values under exactly
these names. A scope level is the set of labels that identifies a scope; every level also
carries the labels that make it unique (a store id is unique only within its platform and
marketplace).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

Unit = Literal["ratio", "money", "count", "days", "flag"]
Family = Literal["orders", "ads", "inventory", "feed"]
ScopeLabel = Literal["platform", "marketplace", "store", "sku", "campaign", "team"]
WindowName = Literal["1h", "24h", "1d", "7d", "28d", "mtd"]

Level = frozenset[str]
STORE: Final[Level] = frozenset({"store"})
SKU: Final[Level] = frozenset({"store", "sku"})
CAMPAIGN: Final[Level] = frozenset({"store", "campaign"})
MARKETPLACE: Final[Level] = frozenset({"marketplace"})
PLATFORM: Final[Level] = frozenset({"platform"})
TEAM: Final[Level] = frozenset({"team"})

# Per level, the labels a scope carries, in display order. Store-based scopes also carry the
# owning team when the ownership file names one, for routing.
LEVEL_LABELS: Final[Mapping[Level, tuple[str, ...]]] = {
    STORE: ("platform", "marketplace", "store"),
    SKU: ("platform", "marketplace", "store", "sku"),
    CAMPAIGN: ("platform", "marketplace", "store", "campaign"),
    MARKETPLACE: ("platform", "marketplace"),
    PLATFORM: ("platform",),
    TEAM: ("team",),
}
LEVEL_NAMES: Final[Mapping[Level, str]] = {
    STORE: "store",
    SKU: "sku",
    CAMPAIGN: "campaign",
    MARKETPLACE: "marketplace",
    PLATFORM: "platform",
    TEAM: "team",
}
# Levels summed across stores (and so across Kafka partitions): daily grain, reporting currency.
ROLLUPS: Final = (MARKETPLACE, PLATFORM, TEAM)
# Trailing windows are whole buckets: hours for 1h/24h, marketplace-local days for the rest.
WINDOWS: Final[tuple[WindowName, ...]] = ("1h", "24h", "1d", "7d", "28d", "mtd")
DAILY_WINDOWS: Final[tuple[WindowName, ...]] = ("1d", "7d", "28d", "mtd")


def level_of(by: Iterable[str]) -> Level | None:
    """The scope level a rule's `by:` names, or None when no level has exactly those labels."""
    wanted = set(by)
    if wanted & {"sku", "campaign"}:
        wanted.add("store")  # a SKU or campaign id is only unique within its store
    for level, labels in LEVEL_LABELS.items():
        if level <= wanted and wanted <= set(labels):
            return level
    return None


def level_text(level: Level) -> str:
    """How people write a level in `by:`: store,sku rather than platform,marketplace,store,sku."""
    return ",".join(label for label in LEVEL_LABELS[level] if label in level)


@dataclass(frozen=True)
class KpiSpec:
    name: str
    unit: Unit
    levels: frozenset[Level]
    families: frozenset[Family]
    windows: tuple[WindowName, ...]
    default_window: WindowName | None
    help: str

    @property
    def windowed(self) -> bool:
        return self.default_window is not None


_SALES_LEVELS: Final = frozenset({STORE, SKU, *ROLLUPS})
_AD_LEVELS: Final = frozenset({STORE, SKU, CAMPAIGN, *ROLLUPS})


def _spec(
    name: str,
    unit: Unit,
    levels: frozenset[Level],
    families: set[Family],
    help: str,
    windows: tuple[WindowName, ...] = WINDOWS,
    default: WindowName | None = "1d",
) -> KpiSpec:
    return KpiSpec(name, unit, levels, frozenset(families), windows, default, help)


CATALOG: Final[Mapping[str, KpiSpec]] = {
    spec.name: spec
    for spec in (
        _spec("gmv", "money", _SALES_LEVELS, {"orders"}, "sales of counted order lines"),
        _spec("orders", "count", _SALES_LEVELS, {"orders"}, "counted orders"),
        _spec("units", "count", _SALES_LEVELS, {"orders"}, "units in counted orders"),
        _spec("aov", "money", _SALES_LEVELS, {"orders"}, "gmv / orders"),
        _spec(
            "cancel_rate",
            "ratio",
            _SALES_LEVELS,
            {"orders"},
            "cancelled orders / all non-test orders",
        ),
        _spec("return_rate", "ratio", _SALES_LEVELS, {"orders"}, "returned units / units"),
        _spec("ad_spend", "money", _AD_LEVELS, {"ads"}, "advertising spend"),
        _spec("ad_sales", "money", _AD_LEVELS, {"ads"}, "sales attributed to ads"),
        _spec("clicks", "count", _AD_LEVELS, {"ads"}, "ad clicks"),
        _spec("impressions", "count", _AD_LEVELS, {"ads"}, "ad impressions"),
        _spec("ad_orders", "count", _AD_LEVELS, {"ads"}, "orders attributed to ads"),
        _spec("acos", "ratio", _AD_LEVELS, {"ads"}, "ad_spend / ad_sales"),
        _spec("roas", "ratio", _AD_LEVELS, {"ads"}, "ad_sales / ad_spend"),
        _spec("ctr", "ratio", _AD_LEVELS, {"ads"}, "clicks / impressions"),
        _spec("cpc", "money", _AD_LEVELS, {"ads"}, "ad_spend / clicks"),
        _spec("cvr", "ratio", _AD_LEVELS, {"ads"}, "ad_orders / clicks"),
        _spec("tacos", "ratio", _SALES_LEVELS, {"orders", "ads"}, "ad_spend / gmv"),
        _spec(
            "gross_margin",
            "ratio",
            _SALES_LEVELS,
            {"orders", "ads"},
            "(gmv - unit cost x units - ad_spend - refunds) / gmv",
        ),
        _spec(
            "available",
            "count",
            frozenset({SKU}),
            {"inventory"},
            "sellable units, all warehouses",
            (),
            None,
        ),
        _spec(
            "inbound",
            "count",
            frozenset({SKU}),
            {"inventory"},
            "units on their way to a warehouse",
            (),
            None,
        ),
        _spec(
            "velocity", "count", frozenset({SKU}), {"orders"}, "units sold per day", default="7d"
        ),
        _spec(
            "days_of_cover",
            "days",
            frozenset({SKU}),
            {"orders", "inventory"},
            "available / velocity: days until stockout",
            default="7d",
        ),
        _spec(
            "stockout",
            "flag",
            frozenset({SKU}),
            {"orders", "inventory"},
            "1 when nothing is available while the SKU still sells",
            default="7d",
        ),
        _spec(
            "target_attainment",
            "ratio",
            frozenset({STORE, MARKETPLACE, TEAM}),
            {"orders"},
            "month-to-date gmv / monthly target",
            ("mtd",),
            "mtd",
        ),
        # A connector's own reports (feed events): "the feed is broken" rather than "no sales".
        _spec(
            "feed_syncs",
            "count",
            frozenset({STORE}),
            {"feed"},
            "passes a connector completed over the store's feeds",
            ("1h", "24h", "1d"),
            "1h",
        ),
        _spec(
            "feed_failures",
            "count",
            frozenset({STORE}),
            {"feed"},
            "passes over the store's feeds that failed after retries",
            ("1h", "24h", "1d"),
            "1h",
        ),
        _spec(
            "pace",
            "ratio",
            frozenset({STORE, MARKETPLACE, TEAM}),
            {"orders"},
            "target_attainment / share of the month elapsed",
            ("mtd",),
            "mtd",
        ),
    )
}


def kpis_for(families: Iterable[str], level: Level) -> tuple[str, ...]:
    """The KPIs at `level` that events of `families` can change."""
    return _kpis_for(frozenset(families), level)


@functools.cache
def _kpis_for(families: frozenset[str], level: Level) -> tuple[str, ...]:
    # Asked for every touched scope of every event: worth remembering.
    return tuple(s.name for s in CATALOG.values() if level in s.levels and s.families & families)


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of event time and the local period it stands for."""

    start: datetime
    end: datetime
    label: str


@dataclass(slots=True)
class Snapshot:
    """The KPI values of one scope over one window right after an event changed them.

    Not frozen, for speed (one is made per scope and window judged), but never changed.

    `values` hold money in the reporting currency (`currency`); `native` holds the same money
    KPIs in the scope's own selling currency (`native_currency`) when it has exactly one.
    A value of None means "undefined" (a zero denominator, a missing FX rate or unit cost):
    never 0, never an error.
    """

    level: Level
    labels: Mapping[str, str]
    values: Mapping[str, Decimal | None]
    at: datetime
    window: Window | None = None
    currency: str | None = None
    zone: str = "UTC"
    native: Mapping[str, Decimal | None] = field(default_factory=dict)
    native_currency: str | None = None
    window_name: str | None = None
    # The usual values of the same KPIs, per baseline (`weeks=4`, `days=7`), for the same part
    # of the local day: what "GMV down 40% vs usual" compares with.
    baselines: Mapping[str, Mapping[str, Decimal | None]] = field(default_factory=dict)


RATIO_QUANTUM: Final = Decimal("0.000001")


def ratio(numerator: int | Decimal, denominator: int | Decimal) -> Decimal | None:
    """numerator / denominator to six decimals, or None (undefined) when the denominator is 0."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATIO_QUANTUM)
