"""KPI values of one scope over one window, from the counters `streams.kpi` keeps.

Windows are whole buckets ending with the touched period: 1h is the local clock hour, 24h the
last 24 hours, 1d the local day, 7d and 28d the last 7 and 28 local days, mtd the local month
so far. Money is summed in minor units per currency and turned into the reporting currency a day
at a time at that day's rate, unrounded, so that a day's total is its local total times the rate;
a value is rounded once, half-even to the reporting currency's minor unit, when it is shown.
A zero denominator, a missing FX rate or a missing unit cost makes a KPI undefined (None).

Only the KPIs asked for are computed (the rules of a scope read a few of the catalog's 25).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Protocol, get_args
from zoneinfo import ZoneInfo

from rules.kpis import CATALOG, DAILY_WINDOWS, LEVEL_NAMES, Snapshot, Window, ratio
from rules.schema import Baseline
from streams.events import FeedName, minor_unit_exponent
from streams.kpi import FEED_FAILED, FEED_OK, SHAPE, Counters, Scope, Touch, shape_name
from streams.reference import TARGET_LEVELS, Reference
from streams.windows import day_window

DAYS: Final[Mapping[str, Decimal]] = {
    "1h": Decimal(1) / 24,
    "24h": Decimal(1),
    "1d": Decimal(1),
    "7d": Decimal(7),
    "28d": Decimal(28),
}
# Money counters that are sales (their currency is the scope's selling currency); `cost` is in
# the currency of the unit cost file.
SELLING: Final = ("gmv", "refunds", "ad_spend", "ad_sales")
# Fewer orders than this in the baseline days make their hourly shape too thin to trust.
MIN_SHAPE_ORDERS: Final = 20


class CounterSource(Protocol):
    """Where a scope's counters are read from (a partition's stores, or the rollups)."""

    def day(self, scope: Scope, day: date) -> Counters | None: ...
    def hour(self, scope: Scope, hour: int) -> Counters | None: ...
    def stock(self, scope: Scope) -> Mapping[str, list[int]] | None: ...

    def generation(self, scope: Scope) -> int | None:
        """A number that changes whenever a past day of the scope changes (None: do not
        cache sums of past days)."""
        ...


# Sums of a window's past days, by (scope, first day, last day, generation): a 7-day window
# judged every hour re-adds the same six days otherwise.
PAST_DAYS_KEPT: Final = 50_000


# ---------------------------------------------------------------- sums with their days


_NO_NAMES: Final[set[str]] = set()  # never added to: Totals swap in their own first


class Totals:
    """Counters summed over some periods; money also kept per local day, to convert each day
    at its own rate. `scale` multiplies everything (a baseline's average share of a day).
    `base` is a sum of other days these add to (a window's past days, kept between
    evaluations with its money already converted)."""

    __slots__ = ("_money", "_names", "_reporting", "base", "c", "fx", "scale")

    def __init__(
        self, fx: Reference, scale: Decimal | None = None, base: Totals | None = None
    ) -> None:
        self.c: dict[str, int] = {}
        self._money: dict[date, dict[str, int]] = {}
        self._names: set[str] = _NO_NAMES  # the money counters seen (`gmv:JPY`), once any
        self.fx = fx
        self.scale = scale
        self.base = base
        self._reporting: dict[str, Decimal | None] | None = None

    def add(self, day: date, counters: Counters) -> None:
        total = self.c
        money: dict[str, int] | None = None
        for name, value in counters.items():
            total[name] = total.get(name, 0) + value
            if ":" in name:
                if money is None:
                    money = self._money.get(day)
                    if money is None:
                        money = self._money[day] = {}
                money[name] = money.get(name, 0) + value
                if self._names is _NO_NAMES:
                    self._names = set()
                self._names.add(name)

    def raw(self, name: str) -> int:
        value = self.c.get(name, 0)
        return value + self.base.raw(name) if self.base is not None else value

    def count(self, name: str) -> Decimal:
        value = Decimal(self.raw(name))
        return value * self.scale if self.scale is not None else value

    def currencies(self) -> set[str]:
        """Selling currencies with money in these totals."""
        names = self._names if self.base is None else self._names | self.base._names
        found = set()
        for name in names:
            kind, currency = name.split(":", 1)
            if kind in SELLING and self.raw(name):
                found.add(currency)
        return found

    def native(self, name: str, currency: str) -> Decimal:
        """`name` in `currency` (major units), exact."""
        value = Decimal(self.raw(f"{name}:{currency}")).scaleb(-minor_unit_exponent(currency))
        return value * self.scale if self.scale is not None else value

    def reporting(self, name: str) -> Decimal | None:
        """`name` in the reporting currency (major units), unrounded; None when a day's rate
        for one of its currencies is missing."""
        if self._reporting is None:
            self._reporting = {}
        elif name in self._reporting:
            return self._reporting[name]
        found = self._own_reporting(name)
        if found is not None and self.base is not None:
            below = self.base.reporting(name)
            found = None if below is None else found + below
        if found is not None and self.scale is not None:
            found *= self.scale
        self._reporting[name] = found
        return found

    def _own_reporting(self, name: str) -> Decimal | None:
        fx = self.fx.fx
        prefix = name + ":"
        total = Decimal(0)
        for day, money in self._money.items():
            for counter, minor in money.items():
                if not minor or not counter.startswith(prefix):
                    continue
                currency = counter[len(prefix) :]
                rate = fx.rate(currency, day)
                if rate is None:
                    return None
                total += Decimal(minor).scaleb(-minor_unit_exponent(currency)) * rate
        return total


# ---------------------------------------------------------------- windows


def window_periods(touch: Touch, window: str) -> tuple[str, list[int] | list[date], Window] | None:
    """(grain, periods, bounds) of a window ending with the touched period."""
    if window in DAILY_WINDOWS:
        return _daily_periods(touch.day, window, touch.scope.zone)
    if window in ("1h", "24h"):
        if touch.hour is None:
            return None  # judged per day only (stock snapshots, cross-store scopes)
        count = 1 if window == "1h" else 24
        hours = [touch.hour - 3600 * k for k in range(count - 1, -1, -1)]
        start = datetime.fromtimestamp(hours[0], UTC)
        end = datetime.fromtimestamp(hours[-1] + 3600, UTC)
        return "h", hours, Window(start, end, window)
    return None


@functools.lru_cache(maxsize=16384)
def _daily_periods(day: date, window: str, zone_name: str) -> tuple[str, list[date], Window]:
    days = _days(day, window)
    zone = ZoneInfo(zone_name)
    first, last = day_window(days[0], zone), day_window(days[-1], zone)
    label = f"{days[0]}..{days[-1]}" if len(days) > 1 else days[0].isoformat()
    return "d", days, Window(first.start, last.end, label)


def _days(day: date, window: str) -> list[date]:
    count = day.day if window == "mtd" else {"1d": 1, "7d": 7, "28d": 28}[window]
    return [day - timedelta(days=k) for k in range(count - 1, -1, -1)]


def window_totals(
    source: CounterSource, reference: Reference, touch: Touch, window: str | None
) -> tuple[Totals, Window | None]:
    totals = Totals(reference)
    if window is None:
        return totals, None
    periods = window_periods(touch, window)
    if periods is None:
        return totals, None
    grain, keys, span = periods
    scope = touch.scope
    if grain == "d" and len(keys) > 2:
        return _days_totals(source, reference, scope, keys), span  # type: ignore[arg-type]
    if grain == "h":
        zone = ZoneInfo(scope.zone)
        for hour in keys:
            assert isinstance(hour, int)
            found = source.hour(scope, hour)
            if found is not None:
                totals.add(datetime.fromtimestamp(hour, zone).date(), found)
    else:
        for day in keys:
            assert isinstance(day, date)
            found = source.day(scope, day)
            if found is not None:
                totals.add(day, found)
    return totals, span


class PastDays:
    """The cache of past-day sums (one per source: a partition's stores)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, date, date, int], Totals] = {}


def _days_totals(
    source: CounterSource, reference: Reference, scope: Scope, days: list[date]
) -> Totals:
    past_days: PastDays | None = getattr(source, "past_days", None)
    generation = source.generation(scope) if past_days is not None else None
    if past_days is None or generation is None:
        totals = Totals(reference)
        for day in days:
            found = source.day(scope, day)
            if found is not None:
                totals.add(day, found)
        return totals
    key = (scope.id, days[0], days[-2], generation)
    past = past_days.sums.get(key)
    if past is None:
        past = Totals(reference)
        for day in days[:-1]:
            found = source.day(scope, day)
            if found is not None:
                past.add(day, found)
        if len(past_days.sums) >= PAST_DAYS_KEPT:
            past_days.sums.clear()
        past_days.sums[key] = past
    totals = Totals(reference, base=past)
    today = source.day(scope, days[-1])
    if today is not None:
        totals.add(days[-1], today)
    return totals


class LazyValues(Mapping[str, Decimal | None]):
    """KPI values computed when first read: a rule whose volume guard fails never pays for
    its own KPI."""

    def __init__(self, calc: Calculator, names: Sequence[str], native: bool) -> None:
        self._calc = calc
        self._names = names
        self._index = 1 if native else 0

    def __getitem__(self, name: str) -> Decimal | None:
        if name not in self._names:
            raise KeyError(name)
        return self._calc.value(name)[self._index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


# ---------------------------------------------------------------- snapshots


def snapshot(
    source: CounterSource,
    reference: Reference,
    touch: Touch,
    window: str | None,
    names: Sequence[str],
    baselines: Iterable[Baseline] = (),
) -> Snapshot:
    """The KPIs `names` of the touched scope over one window (and the usual values of each
    baseline the rules of this window compare with)."""
    totals, span = window_totals(source, reference, touch, window)
    stock = source.stock(touch.scope) if _needs_stock(names) else None
    calc = Calculator(totals, reference, window, touch, stock)
    return Snapshot(
        level=touch.scope.level,
        labels=touch.scope.labels,
        values=LazyValues(calc, names, native=False),
        at=touch.at,
        window=span,
        currency=reference.reporting,
        zone=touch.scope.zone,
        native=LazyValues(calc, names, native=True),
        native_currency=calc.native_currency if names else None,
        window_name=window,
        baselines={b.key: usual(source, reference, touch, names, b) for b in baselines}
        if baselines
        else {},
    )


_STOCK_KPIS: Final = frozenset({"available", "inbound", "days_of_cover", "stockout"})


def _needs_stock(names: Iterable[str]) -> bool:
    return any(name in _STOCK_KPIS for name in names)


def usual(
    source: CounterSource,
    reference: Reference,
    touch: Touch,
    names: Sequence[str],
    baseline: Baseline,
) -> dict[str, Decimal | None]:
    """The KPIs over the average of the baseline's past days, cut to the share of a usual day
    that is behind us at the touch's local time (`usual_share`). Days without any bucket (no
    activity, or before the store existed) are left out."""
    found = [
        (day, counters)
        for day in baseline.past_days(touch.day)
        if (counters := source.day(touch.scope, day)) is not None
    ]
    if not found:
        return dict.fromkeys(names)
    share = usual_share([c for _, c in found], touch) / len(found)
    totals = Totals(reference, share)
    for day, counters in found:
        totals.add(day, counters)
    calc = Calculator(totals, reference, "1d", touch, None)
    return {name: calc.value(name)[0] for name in names}


def usual_share(days: list[Counters], touch: Touch) -> Decimal:
    """How much of a usual day is behind the touch's local clock time: from the past days'
    orders by local hour (a business that sells in the evening has done little by 09:00),
    else, with too few orders to tell, the share of the day's hours."""
    zone = ZoneInfo(touch.scope.zone)
    if touch.at >= day_window(touch.day, zone).end:
        return Decimal(1)  # a late event for a day that is over: all of it
    hourly = [sum(int(c.get(shape_name(h), 0)) for c in days) for h in range(24)]
    total = sum(hourly)
    if total < MIN_SHAPE_ORDERS:
        return _day_share(touch)
    local = touch.at.astimezone(zone)
    into_hour = Decimal(local.minute * 60 + local.second) / 3600
    behind = sum(hourly[: local.hour]) + hourly[local.hour] * into_hour
    return (Decimal(behind) / total).quantize(Decimal("0.000001"))


def _day_share(touch: Touch) -> Decimal:
    """The share of the touched local day behind the touch, at least one hour's worth."""
    day = day_window(touch.day, ZoneInfo(touch.scope.zone))
    share = (touch.at - day.start) / (day.end - day.start)
    return Decimal(str(round(min(max(share, 1 / 24), 1.0), 6)))


# ---------------------------------------------------------------- the formulas


Pair = tuple[Decimal | None, Decimal | None]


class Calculator:
    """The catalog's formulas over one window's totals: (value in the reporting currency or
    unit-free, value in the selling currency), each computed once when first asked."""

    def __init__(
        self,
        totals: Totals,
        reference: Reference,
        window: str | None,
        touch: Touch,
        stock: Mapping[str, list[int]] | None,
    ) -> None:
        self.t = totals
        self.reference = reference
        self.window = window
        self.touch = touch
        self.stock = stock
        self._native: list[str | None] = []
        self._done: dict[str, Pair] = {}

    @property
    def native_currency(self) -> str | None:
        """The scope's selling currency over the window, when it has exactly one."""
        if not self._native:
            currencies = self.t.currencies()
            self._native.append(next(iter(currencies)) if len(currencies) == 1 else None)
        return self._native[0]

    def value(self, name: str) -> Pair:
        found = self._done.get(name)
        if found is None:
            formula = _FORMULAS.get(name)
            found = formula(self) if formula is not None else (self.t.count(name), None)
            self._done[name] = found
        return found

    # money -------------------------------------------------------------
    def money(self, name: str) -> Pair:
        value = self.t.reporting(name)
        shown = _round(value, self.reference.reporting) if value is not None else None
        native = None
        if self.native_currency is not None:
            native = self.t.native(name, self.native_currency)
        return shown, native

    def per(self, money: str, count: str) -> Pair:
        """A money amount per unit of a count (aov, cpc), rounded to the currency's minor unit."""
        n = self.t.count(count)
        if n == 0:
            return None, None
        value = self.t.reporting(money)
        native = None
        if self.native_currency is not None:
            native = _round(self.t.native(money, self.native_currency) / n, self.native_currency)
        return (_round(value / n, self.reference.reporting) if value is not None else None), native

    def share(self, numerator: str, denominator: str) -> Decimal | None:
        """A ratio of two money amounts, in the selling currency when there is one (exact),
        else in the reporting currency (undefined when a rate is missing)."""
        if self.native_currency is not None:
            cur = self.native_currency
            return ratio(self.t.raw(f"{numerator}:{cur}"), self.t.raw(f"{denominator}:{cur}"))
        top, bottom = self.t.reporting(numerator), self.t.reporting(denominator)
        if top is None or bottom is None:
            return None
        return ratio(top, bottom)

    def gross_margin(self) -> Pair:
        if self.t.raw("cost_missing"):
            return None, None
        gmv = self.t.reporting("gmv")
        spent = [self.t.reporting(n) for n in ("cost", "ad_spend", "refunds")]
        if gmv is None or any(s is None for s in spent):
            return None, None
        return ratio(gmv - sum(s for s in spent if s is not None), gmv), None

    # stock -------------------------------------------------------------
    def stock_total(self, field: int) -> Decimal | None:
        if not self.stock:
            return None
        return Decimal(sum(snapshot[field] for snapshot in self.stock.values()))

    def velocity(self) -> Decimal | None:
        if self.window is None:
            return None
        days = DAYS.get(self.window) or Decimal(self.touch.day.day)  # mtd: days so far
        return ratio(self.t.count("units"), days)

    def days_of_cover(self) -> Pair:
        available, velocity = self.stock_total(1), self.velocity()
        if available is None or velocity is None:
            return None, None
        return ratio(available, velocity), None

    def stockout(self) -> Pair:
        available, velocity = self.stock_total(1), self.velocity()
        if available is None or velocity is None:
            return None, None
        return Decimal(int(available == 0 and velocity > 0)), None

    # targets -----------------------------------------------------------
    def target_attainment(self) -> Pair:
        target = self._target()
        if target is None:
            return None, None
        gmv = self.t.reporting("gmv")
        return (ratio(gmv, target) if gmv is not None else None), None

    def pace(self) -> Pair:
        attainment = self.target_attainment()[0]
        scope = self.touch.scope
        elapsed = _month_elapsed(self.touch.at, self.touch.day, ZoneInfo(scope.zone))
        if attainment is None or elapsed is None:
            return None, None
        return ratio(attainment, elapsed), None

    def _target(self) -> Decimal | None:
        level = LEVEL_NAMES[self.touch.scope.level]
        if level not in TARGET_LEVELS:
            return None
        labels = tuple(self.touch.scope.labels.get(n, "") for n in TARGET_LEVELS[level])
        month = self.touch.day.strftime("%Y-%m")
        amount = self.reference.targets.get((month, level, labels))
        if amount is None:
            return None
        rate = self.reference.fx.rate(amount.currency, self.touch.day.replace(day=1))
        return None if rate is None else amount.value * rate


def _pair(value: Decimal | None) -> Pair:
    return value, None


def _passes(calc: Calculator, prefix: str) -> Pair:
    """A connector's passes over all of a store's feeds (counters `feed_ok.orders`, ...)."""
    return sum((calc.t.count(prefix + feed) for feed in get_args(FeedName)), Decimal(0)), None


_FORMULAS: Final[dict[str, Callable[[Calculator], Pair]]] = {
    "gmv": lambda c: c.money("gmv"),
    "ad_spend": lambda c: c.money("ad_spend"),
    "ad_sales": lambda c: c.money("ad_sales"),
    "aov": lambda c: c.per("gmv", "orders"),
    "cpc": lambda c: c.per("ad_spend", "clicks"),
    "acos": lambda c: _pair(c.share("ad_spend", "ad_sales")),
    "roas": lambda c: _pair(c.share("ad_sales", "ad_spend")),
    "tacos": lambda c: _pair(c.share("ad_spend", "gmv")),
    "ctr": lambda c: _pair(ratio(c.t.count("clicks"), c.t.count("impressions"))),
    "cvr": lambda c: _pair(ratio(c.t.count("ad_orders"), c.t.count("clicks"))),
    "cancel_rate": lambda c: _pair(
        ratio(c.t.count("cancelled_orders"), c.t.count("cancelled_orders") + c.t.count("orders"))
    ),
    "return_rate": lambda c: _pair(ratio(c.t.count("returned_units"), c.t.count("units"))),
    "gross_margin": Calculator.gross_margin,
    "available": lambda c: _pair(c.stock_total(1)),
    "inbound": lambda c: _pair(c.stock_total(2)),
    "velocity": lambda c: _pair(c.velocity()),
    "days_of_cover": Calculator.days_of_cover,
    "stockout": Calculator.stockout,
    "target_attainment": Calculator.target_attainment,
    "pace": Calculator.pace,
    "feed_syncs": lambda c: _passes(c, FEED_OK),
    "feed_failures": lambda c: _passes(c, FEED_FAILED),
}
if set(_FORMULAS) | {"orders", "units", "clicks", "impressions", "ad_orders"} != set(CATALOG):
    raise RuntimeError("streams.values: every catalog KPI needs a formula")  # pragma: no cover


def _round(value: Decimal, currency: str | None) -> Decimal:
    exponent = minor_unit_exponent(currency) if currency else 2
    return value.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_EVEN)


def _month_elapsed(at: datetime, day: date, zone: ZoneInfo) -> Decimal | None:
    """The share of the local month behind `at` (0 < share <= 1)."""
    start = datetime.combine(day.replace(day=1), datetime.min.time(), zone).astimezone(UTC)
    next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    end = datetime.combine(next_month, datetime.min.time(), zone).astimezone(UTC)
    elapsed = (min(at, end) - start) / (end - start)
    return Decimal(str(round(elapsed, 9))) if elapsed > 0 else None


def shape_counters(counters: Counters) -> dict[str, int]:
    """The orders-by-local-hour counters of a day bucket."""
    return {k: v for k, v in counters.items() if k.startswith(SHAPE)}
