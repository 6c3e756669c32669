"""Reference data that changes slowly: FX rates, SKU unit costs, monthly targets, store owners.

Each comes from a CSV file a seller already keeps in a spreadsheet. A bad row is an error naming
file:line and what is wrong; every bad row of a file is reported at once.

    fx.csv       date,currency,rate             1 <currency> = <rate> reporting currency, from date
    costs.csv    platform,marketplace,store,sku,unit_cost,currency
    targets.csv  month,level,platform,marketplace,store,team,amount,currency
                 (level is store, marketplace or team; unused columns stay empty)
    teams.csv    platform,marketplace,store,team
"""

from __future__ import annotations

import bisect
import csv
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from rules.errors import ConfigError, KpiwatchError, Problem
from streams.events import minor_unit_exponent

StoreKey = tuple[str, str, str]  # platform, marketplace, store
TargetKey = tuple[str, str, tuple[str, ...]]  # month, level, labels


@dataclass(frozen=True)
class Amount:
    value: Decimal
    currency: str


@dataclass
class FxRates:
    """Date-effective rates to the reporting currency; a rate holds until the next one."""

    reporting: str = "USD"
    _dates: dict[str, list[date]] = field(default_factory=dict)
    _rates: dict[str, list[Decimal]] = field(default_factory=dict)
    # Told once per currency, with the first day found without a rate: money in it is then
    # undefined (null), which a person would otherwise not notice.
    on_missing: Callable[[str, date], None] | None = None
    missing: dict[str, date] = field(default_factory=dict)

    def set(self, currency: str, effective: date, rate: Decimal) -> None:
        dates = self._dates.setdefault(currency, [])
        rates = self._rates.setdefault(currency, [])
        index = bisect.bisect_left(dates, effective)
        if index < len(dates) and dates[index] == effective:
            rates[index] = rate
        else:
            dates.insert(index, effective)
            rates.insert(index, rate)

    def rate(self, currency: str, on: date) -> Decimal | None:
        if currency == self.reporting:
            return Decimal(1)
        dates = self._dates.get(currency)
        index = bisect.bisect_right(dates, on) - 1 if dates else -1
        if index < 0:
            self._missed(currency, on)
            return None
        return self._rates[currency][index]

    def _missed(self, currency: str, on: date) -> None:
        if currency in self.missing:
            return
        self.missing[currency] = on
        if self.on_missing is not None:
            self.on_missing(currency, on)

    def convert_minor(self, minor: int, currency: str, on: date) -> int | None:
        """Minor units of `currency` as minor units of the reporting currency, rounded half-even
        once per contribution (so a sum of contributions reconciles with its parts)."""
        rate = self.rate(currency, on)
        if rate is None:
            return None
        shift = minor_unit_exponent(self.reporting) - minor_unit_exponent(currency)
        converted = (Decimal(minor) * rate).scaleb(shift)
        return int(converted.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass
class Reference:
    fx: FxRates = field(default_factory=FxRates)
    costs: dict[tuple[str, str, str, str], Amount] = field(default_factory=dict)
    targets: dict[TargetKey, Amount] = field(default_factory=dict)
    teams: dict[StoreKey, str] = field(default_factory=dict)

    @property
    def reporting(self) -> str:
        return self.fx.reporting


def load_reference(
    reporting: str = "USD",
    fx: Path | None = None,
    costs: Path | None = None,
    targets: Path | None = None,
    teams: Path | None = None,
) -> Reference:
    """Load whichever files are given; raises ConfigError listing every bad row of every file
    (and KpiwatchError for a reporting currency that is not one)."""
    try:
        minor_unit_exponent(reporting)
    except ValueError as exc:
        raise KpiwatchError(f"reporting currency: {exc}") from None
    reference = Reference(fx=FxRates(reporting=reporting))
    problems: list[Problem] = []
    for path, columns, apply in (
        (fx, FX_COLUMNS, _fx_row),
        (costs, COST_COLUMNS, _cost_row),
        (targets, TARGET_COLUMNS, _target_row),
        (teams, TEAM_COLUMNS, _team_row),
    ):
        if path is not None:
            problems.extend(_load(path, columns, functools.partial(apply, reference)))
    if problems:
        raise ConfigError(problems)
    return reference


FX_COLUMNS: Final = ("date", "currency", "rate")
COST_COLUMNS: Final = ("platform", "marketplace", "store", "sku", "unit_cost", "currency")
TARGET_COLUMNS: Final = (
    "month",
    "level",
    "platform",
    "marketplace",
    "store",
    "team",
    "amount",
    "currency",
)
TEAM_COLUMNS: Final = ("platform", "marketplace", "store", "team")
TARGET_LEVELS: Final = {
    "store": ("platform", "marketplace", "store"),
    "marketplace": ("platform", "marketplace"),
    "team": ("team",),
}


def _load(
    path: Path, columns: tuple[str, ...], apply: Callable[[dict[str, str]], None]
) -> list[Problem]:
    problems: list[Problem] = []
    try:
        rows = list(csv_rows(path, columns))
    except (OSError, ValueError) as exc:
        return [Problem(str(path), None, str(exc))]
    for line, row in rows:
        try:
            apply(row)
        except (ValueError, InvalidOperation) as exc:
            problems.append(Problem(str(path), line, str(exc) or "not a number"))
    return problems


def csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"missing column(s) {', '.join(missing)}; expected {','.join(columns)}"
            )
        for row in reader:
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def _decimal(text: str, what: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what} must be a non-negative number, got {text!r}")
    return value


def _amount(row: dict[str, str], column: str) -> Amount:
    minor_unit_exponent(row["currency"])
    return Amount(_decimal(row[column], column), row["currency"])


def _fx_row(reference: Reference, row: dict[str, str]) -> None:
    apply_fx_row(reference.fx, row)


def apply_fx_row(fx: FxRates, row: dict[str, str]) -> None:
    """One rate from a CSV row or an fx-rates topic message: date, currency, rate."""
    minor_unit_exponent(row["currency"])
    rate = _decimal(row["rate"], "rate")
    if rate == 0:
        raise ValueError("rate must be above 0")
    fx.set(row["currency"], date.fromisoformat(row["date"]), rate)


def _cost_row(reference: Reference, row: dict[str, str]) -> None:
    key = (row["platform"], row["marketplace"], row["store"], row["sku"])
    if not all(key):
        raise ValueError("platform, marketplace, store and sku are all needed")
    reference.costs[key] = _amount(row, "unit_cost")


def _target_row(reference: Reference, row: dict[str, str]) -> None:
    month = row["month"]
    date.fromisoformat(f"{month}-01")  # YYYY-MM
    labels = TARGET_LEVELS.get(row["level"])
    if labels is None:
        raise ValueError(f"level {row['level']!r}: use one of {', '.join(TARGET_LEVELS)}")
    values = tuple(row[label] for label in labels)
    if not all(values):
        raise ValueError(f"a {row['level']} target needs {', '.join(labels)}")
    reference.targets[(month, row["level"], values)] = _amount(row, "amount")


def _team_row(reference: Reference, row: dict[str, str]) -> None:
    key = (row["platform"], row["marketplace"], row["store"])
    if not all(key) or not row["team"]:
        raise ValueError("platform, marketplace, store and team are all needed")
    reference.teams[key] = row["team"]
