"""KPI values of one scope over one window, from the counters `streams.kpi` keeps.

Windows are whole buckets ending with the touched period: 1h is the local clock hour, 24h the
last 24 hours, 1d the local day, 7d and 28d the last 7 and 28 local days, mtd the local month
so far. A zero denominator, a missing FX rate or a missing unit cost makes a KPI undefined (None).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final
from zoneinfo import ZoneInfo

from rules.kpis import (
    CATALOG,
    DAILY_WINDOWS,
    LEVEL_NAMES,
    ROLLUPS,
    Snapshot,
    Window,
    kpis_for,
    ratio,
)
from rules.schema import Baseline
from streams.events import minor_unit_exponent
from streams.kpi import Counters, State, Touch, bucket_key, shape_name
from streams.reference import TARGET_LEVELS, Reference
from streams.windows import day_window, hour_period

MONEY_COUNTERS: Final = ("gmv", "ad_spend", "ad_sales", "refunds", "cost")
DAYS: Final[Mapping[str, Decimal]] = {
    "1h": Decimal(1) / 24,
    "24h": Decimal(1),
    "1d": Decimal(1),
    "7d": Decimal(7),
    "28d": Decimal(28),
}


def snapshot(
    state: State,
    reference: Reference,
    touch: Touch,
    window: str | None,
    baselines: Iterable[Baseline] = (),
) -> Snapshot:
    """Every KPI the touch can have changed, for one window of its scope, with the usual values
    of each baseline the rules of this window compare with."""
    names = [
        n
        for n in kpis_for(touch.families, touch.scope.level)
        if (window in CATALOG[n].windows) or (window is None and not CATALOG[n].windowed)
    ]
    counters, span = _window_counters(state, touch, window)
    inventory = _inventory(state, touch)
    calc = _Calculator(counters, reference, window, touch, inventory)
    values: dict[str, Decimal | None] = {}
    native: dict[str, Decimal | None] = {}
    for name in names:
        values[name], native[name] = calc.value(name)
    return Snapshot(
        level=touch.scope.level,
        labels=touch.scope.labels,
        values=values,
        at=touch.at,
        window=span,
        currency=reference.reporting,
        zone=touch.scope.zone,
        native=native,
        native_currency=calc.native_currency,
        window_name=window,
        baselines={b.key: _usual(state, reference, touch, names, b) for b in baselines},
    )


def _usual(
    state: State, reference: Reference, touch: Touch, names: list[str], baseline: Baseline
) -> dict[str, Decimal | None]:
    """The KPIs over the average of the baseline's past days, cut to the share of a usual day
    that is behind us at the touch's local time: the share of those days' orders placed
    before this clock time (`usual_share`). Days without any bucket (no activity, or before the
    store existed) are left out."""
    table = state.rollups if touch.scope.level in ROLLUPS else state.buckets
    found = [
        bucket["counters"]
        for day in baseline.past_days(touch.day)
        if (bucket := table.get(bucket_key(touch.scope, "d", day.isoformat()))) is not None
    ]
    if not found:
        return dict.fromkeys(names)
    share = usual_share(found, touch) / len(found)
    average = {
        name: int((sum(Decimal(c.get(name, 0)) for c in found) * share).to_integral_value())
        for name in {name for counters in found for name in counters}
    }
    calc = _Calculator(average, reference, "1d", touch, None)
    return {name: calc.value(name)[0] for name in names}


# Fewer orders than this in the baseline days make their hourly shape too thin to trust.
MIN_SHAPE_ORDERS: Final = 20


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


def window_periods(touch: Touch, window: str) -> tuple[str, list[str], Window] | None:
    """(grain, period labels, bounds) of a window ending with the touched period."""
    zone = ZoneInfo(touch.scope.zone)
    if window in ("1h", "24h"):
        if touch.hour is None:
            return None  # cross-store scopes keep days only
        last = datetime.fromisoformat(touch.hour)
        hours = [hour_period(last - timedelta(hours=k), zone) for k in range(_hours(window))]
        hours.reverse()
        return "h", [h.label for h in hours], Window(hours[0].start, hours[-1].end, window)
    if window not in DAILY_WINDOWS:
        return None
    days = _days(touch.day, window)
    first, last_day = day_window(days[0], zone), day_window(days[-1], zone)
    label = f"{days[0]}..{days[-1]}" if len(days) > 1 else days[0].isoformat()
    return "d", [d.isoformat() for d in days], Window(first.start, last_day.end, label)


def _hours(window: str) -> int:
    return 1 if window == "1h" else 24


def _days(day: date, window: str) -> list[date]:
    count = day.day if window == "mtd" else {"1d": 1, "7d": 7, "28d": 28}[window]
    return [day - timedelta(days=k) for k in range(count - 1, -1, -1)]


def _window_counters(
    state: State, touch: Touch, window: str | None
) -> tuple[dict[str, int], Window | None]:
    if window is None:
        return {}, None
    periods = window_periods(touch, window)
    if periods is None:
        return {}, None
    grain, labels, span = periods
    table = state.rollups if touch.scope.level in ROLLUPS else state.buckets
    total: dict[str, int] = {}
    for label in labels:
        bucket = table.get(bucket_key(touch.scope, grain, label))
        if bucket is not None:
            for name, value in bucket["counters"].items():
                total[name] = total.get(name, 0) + value
    return total, span


def _inventory(state: State, touch: Touch) -> dict[str, int] | None:
    record = state.inventory.get(touch.scope.key)
    if record is None:
        return None
    warehouses = record["warehouses"].values()
    return {
        "available": sum(w["available"] for w in warehouses),
        "inbound": sum(w["inbound"] for w in warehouses),
    }


class _Calculator:
    """The catalog's formulas over one window's summed counters."""

    def __init__(
        self,
        counters: dict[str, int],
        reference: Reference,
        window: str | None,
        touch: Touch,
        inventory: dict[str, int] | None,
    ) -> None:
        self.c = counters
        self.reference = reference
        self.window = window
        self.touch = touch
        self.inventory = inventory
        currencies = {name.split(":", 1)[1] for name in counters if ":" in name}
        self.native_currency = next(iter(currencies)) if len(currencies) == 1 else None
        self.fx_ok = counters.get("fx_missing", 0) == 0

    def value(self, name: str) -> tuple[Decimal | None, Decimal | None]:
        """(value in the reporting currency or unit-free, value in the selling currency)."""
        method = getattr(self, f"_{name}", None)
        if method is not None:
            result: tuple[Decimal | None, Decimal | None] = method()
            return result
        return Decimal(self.c.get(name, 0)), None

    # money -------------------------------------------------------------
    def _money(self, name: str) -> tuple[Decimal | None, Decimal | None]:
        reporting = self.reference.reporting
        value = (
            Decimal(self.c.get(name, 0)).scaleb(-minor_unit_exponent(reporting))
            if self.fx_ok
            else None
        )
        native = None
        if self.native_currency is not None:
            minor = self.c.get(f"{name}:{self.native_currency}", 0)
            native = Decimal(minor).scaleb(-minor_unit_exponent(self.native_currency))
        return value, native

    def _gmv(self) -> tuple[Decimal | None, Decimal | None]:
        return self._money("gmv")

    def _ad_spend(self) -> tuple[Decimal | None, Decimal | None]:
        return self._money("ad_spend")

    def _ad_sales(self) -> tuple[Decimal | None, Decimal | None]:
        return self._money("ad_sales")

    def _per(self, money: str, count: str) -> tuple[Decimal | None, Decimal | None]:
        """A money amount per unit of a count (aov, cpc), rounded to the currency's minor unit."""
        value, native = self._money(money)
        n = self.c.get(count, 0)
        if n == 0:
            return None, None
        return (
            _round(value / n, self.reference.reporting) if value is not None else None,
            _round(native / n, self.native_currency)
            if native is not None and self.native_currency
            else None,
        )

    def _aov(self) -> tuple[Decimal | None, Decimal | None]:
        return self._per("gmv", "orders")

    def _cpc(self) -> tuple[Decimal | None, Decimal | None]:
        return self._per("ad_spend", "clicks")

    # ratios --------------------------------------------------------------
    def _share(self, numerator: str, denominator: str) -> Decimal | None:
        """A ratio of two money counters, in the selling currency when there is one (exact),
        else in the reporting currency (undefined when a rate is missing)."""
        if self.native_currency is not None:
            cur = self.native_currency
            return ratio(self.c.get(f"{numerator}:{cur}", 0), self.c.get(f"{denominator}:{cur}", 0))
        if not self.fx_ok:
            return None
        return ratio(self.c.get(numerator, 0), self.c.get(denominator, 0))

    def _acos(self) -> tuple[Decimal | None, None]:
        return self._share("ad_spend", "ad_sales"), None

    def _roas(self) -> tuple[Decimal | None, None]:
        return self._share("ad_sales", "ad_spend"), None

    def _tacos(self) -> tuple[Decimal | None, None]:
        return self._share("ad_spend", "gmv"), None

    def _ctr(self) -> tuple[Decimal | None, None]:
        return ratio(self.c.get("clicks", 0), self.c.get("impressions", 0)), None

    def _cvr(self) -> tuple[Decimal | None, None]:
        return ratio(self.c.get("ad_orders", 0), self.c.get("clicks", 0)), None

    def _cancel_rate(self) -> tuple[Decimal | None, None]:
        cancelled = self.c.get("cancelled_orders", 0)
        return ratio(cancelled, cancelled + self.c.get("orders", 0)), None

    def _return_rate(self) -> tuple[Decimal | None, None]:
        return ratio(self.c.get("returned_units", 0), self.c.get("units", 0)), None

    def _gross_margin(self) -> tuple[Decimal | None, None]:
        if not self.fx_ok or self.c.get("cost_missing", 0):
            return None, None
        gmv = self.c.get("gmv", 0)
        spent = self.c.get("cost", 0) + self.c.get("ad_spend", 0) + self.c.get("refunds", 0)
        return ratio(gmv - spent, gmv), None

    # inventory -------------------------------------------------------------
    def _available(self) -> tuple[Decimal | None, None]:
        return (Decimal(self.inventory["available"]) if self.inventory else None), None

    def _inbound(self) -> tuple[Decimal | None, None]:
        return (Decimal(self.inventory["inbound"]) if self.inventory else None), None

    def _velocity(self) -> tuple[Decimal | None, None]:
        if self.window is None:
            return None, None
        days = DAYS.get(self.window) or Decimal(self.touch.day.day)  # mtd: days so far
        return ratio(self.c.get("units", 0), days), None

    def _days_of_cover(self) -> tuple[Decimal | None, None]:
        velocity = self._velocity()[0]
        if self.inventory is None or velocity is None:
            return None, None
        return ratio(self.inventory["available"], velocity), None

    def _stockout(self) -> tuple[Decimal | None, None]:
        velocity = self._velocity()[0]
        if self.inventory is None or velocity is None:
            return None, None
        return Decimal(int(self.inventory["available"] == 0 and velocity > 0)), None

    # targets ---------------------------------------------------------------
    def _target_attainment(self) -> tuple[Decimal | None, None]:
        target = self._target_minor()
        if target is None or not self.fx_ok:
            return None, None
        return ratio(self.c.get("gmv", 0), target), None

    def _pace(self) -> tuple[Decimal | None, None]:
        attainment = self._target_attainment()[0]
        elapsed = _month_elapsed(self.touch.at, self.touch.day, ZoneInfo(self.touch.scope.zone))
        if attainment is None or elapsed is None:
            return None, None
        return ratio(attainment, elapsed), None

    def _target_minor(self) -> int | None:
        level = LEVEL_NAMES[self.touch.scope.level]
        if level not in TARGET_LEVELS:
            return None
        labels = tuple(self.touch.scope.labels.get(n, "") for n in TARGET_LEVELS[level])
        month = self.touch.day.strftime("%Y-%m")
        amount = self.reference.targets.get((month, level, labels))
        if amount is None:
            return None
        minor = int(amount.value.scaleb(minor_unit_exponent(amount.currency)))
        return self.reference.fx.convert_minor(
            minor, amount.currency, self.touch.day.replace(day=1)
        )


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
