"""The rule file as people write it: pydantic models, strict, exported as JSON Schema.

This is the parsed form only; `rules.load` compiles it into `CompiledRule`s that run.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal

import iso4217
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from rules.kpis import ScopeLabel, WindowName

Severity = Literal["warning", "critical"]
SEVERITY_ORDER: Final[tuple[Severity, ...]] = ("critical", "warning")

_OPS: Final[dict[str, Callable[[Decimal, Decimal], bool]]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
# Digits with optional thousands separators (1,000 or 1_000) and decimals.
_NUMBER = r"[0-9]+(?:[,_][0-9]{3})*(?:\.[0-9]+)?"
_OP = r">=|<=|>|<"
# `d` is days (days of cover: `< 7d`); a currency is three capitals.
_UNIT = r"%|[A-Z]{3}|d"
_THRESHOLD_RE: Final = re.compile(
    rf"^\s*(?P<op>{_OP})\s*(?P<number>{_NUMBER})\s*(?P<unit>{_UNIT})?\s*$"
)
# The same language without Python's named groups: JSON Schema patterns are ECMA-262 regexes.
THRESHOLD_PATTERN: Final = rf"^\s*({_OP})\s*({_NUMBER})\s*({_UNIT})?\s*$"
_GUARD_RE: Final = re.compile(r"^\s*(?P<kpi>[a-z_]+)\s*(?P<rest>[<>].*)$")
GUARD_PATTERN: Final = rf"^\s*[a-z_]+\s*({_OP})\s*({_NUMBER})\s*({_UNIT})?\s*$"


@dataclass(frozen=True)
class Threshold:
    """`> 35%`, `< 10`, `>= 20 USD`: a comparison, a number, and an optional unit."""

    op: str
    value: Decimal
    unit: str | None
    text: str

    def holds(self, value: Decimal) -> bool:
        return _OPS[self.op](value, self.value)

    @property
    def upward(self) -> bool:
        """True when the threshold holds above its number (`>`, `>=`)."""
        return self.op in (">", ">=")

    def overlaps(self, other: Threshold) -> bool:
        """Whether some value satisfies both comparisons."""
        if self.upward == other.upward:
            return True
        low, high = (self, other) if self.upward else (other, self)
        if low.value != high.value:
            return low.value < high.value
        return low.op == ">=" and high.op == "<="

    def __str__(self) -> str:
        return self.text


def parse_threshold(text: Any) -> Threshold:
    if isinstance(text, Threshold):
        return text
    if isinstance(text, int | float | Decimal) and not isinstance(text, bool):
        raise ValueError(f"write a comparison such as '> {text}', not a bare number")
    if not isinstance(text, str):
        raise ValueError(f"expected a comparison such as '> 35%', got {text!r}")
    match = _THRESHOLD_RE.match(text)
    if match is None:
        raise ValueError(f"cannot read {text!r}: write it as '> 35%', '< 10' or '>= 20 USD'")
    try:
        number = Decimal(match["number"].replace("_", "").replace(",", ""))
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only digits
        raise ValueError(f"cannot read the number in {text!r}") from exc
    unit = match["unit"]
    if unit == "%":
        number = number / 100
    return Threshold(match["op"], number, unit, " ".join(text.split()))


@dataclass(frozen=True)
class Guard:
    """`ad_spend >= 20 USD`: a minimum volume the scope needs before the rule may judge it."""

    kpi: str
    threshold: Threshold

    def __str__(self) -> str:
        return f"{self.kpi} {self.threshold}"


def parse_guard(text: Any) -> Guard:
    if isinstance(text, Guard):
        return text
    if not isinstance(text, str) or (match := _GUARD_RE.match(text)) is None:
        raise ValueError(f"cannot read {text!r}: write it as 'ad_spend >= 20 USD'")
    return Guard(match["kpi"], parse_threshold(match["rest"]))


_DURATION_RE: Final = re.compile(
    r"^\s*(?:(?P<d>[0-9]+)d)?\s*(?:(?P<h>[0-9]+)h)?\s*(?:(?P<m>[0-9]+)m)?\s*(?:(?P<s>[0-9]+)s)?\s*$"
)
DURATION_PATTERN: Final = r"^\s*([0-9]+d)?\s*([0-9]+h)?\s*([0-9]+m)?\s*([0-9]+s)?\s*$"


def parse_duration(text: Any) -> timedelta:
    """`30m`, `2h`, `1d`, `1h30m`: how long a breach must hold or an alert waits to repeat."""
    if isinstance(text, timedelta):
        return text
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"cannot read {text!r} as a duration: write it as '30m', '2h' or '1d'")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    try:
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any duration can be") from None


def duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    text = ""
    for unit, size in units:
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text or "0s"


DurationText = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(duration_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30m", "2h"]}),
]

ThresholdText = Annotated[
    Threshold,
    PlainValidator(parse_threshold),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": THRESHOLD_PATTERN, "examples": ["> 35%", "< 10"]}),
]
GuardText = Annotated[
    Guard,
    PlainValidator(parse_guard),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": GUARD_PATTERN, "examples": ["ad_spend >= 20 USD"]}
    ),
]


def _listify(value: Any) -> Any:
    # YAML reads an unquoted 2026-11-11 as a date: one value too.
    return [value] if isinstance(value, str | date) else value


def _one_or_many(item: dict[str, Any]) -> WithJsonSchema:
    """The schema of a key that takes one value or a list of them (`require`, `filters`)."""
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item}]})


def is_currency(code: str) -> bool:
    """An ISO 4217 code that money can be counted in (not XAU, not XXX)."""
    try:
        return iso4217.Currency(code).exponent is not None
    except ValueError:
        return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Language = Literal["en", "zh"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE: Final = re.compile(
    r"^\s*(?P<a>(?:[0-9]{4}-)?[0-9]{2}-[0-9]{2})\s*(?:\.\.\s*(?P<b>(?:[0-9]{4}-)?[0-9]{2}-[0-9]{2}))?\s*$"
)
_HOURS_RE: Final = re.compile(r"^\s*(?P<a>[0-9]{2}:[0-9]{2})\s*-\s*(?P<b>[0-9]{2}:[0-9]{2})\s*$")


@dataclass(frozen=True)
class DateRange:
    """`2026-07-08..2026-07-09` (once) or `11-11` (every year), both ends included."""

    first: tuple[int, int, int]  # (year or 0 for every year, month, day)
    last: tuple[int, int, int]
    text: str

    def __str__(self) -> str:
        return self.text


def _month_day(text: str) -> tuple[int, int, int]:
    year = 0
    if len(text) == 10:
        year, text = date.fromisoformat(text).year, text[5:]
    month, day = (int(part) for part in text.split("-"))
    date(2000, month, day)  # raises ValueError for 02-30 (2000 is a leap year: 02-29 is fine)
    return year, month, day


def parse_date_range(text: Any) -> DateRange:
    if isinstance(text, DateRange):
        return text
    if isinstance(text, date):
        text = text.isoformat()
    match = _RANGE_RE.match(text) if isinstance(text, str) else None
    bad = f"cannot read {text!r}: write a date as '2026-11-11', '11-11' (every year) or a range "
    bad += "'2026-07-08..2026-07-09'"
    if match is None:
        raise ValueError(bad)
    try:
        first = _month_day(match["a"])
        last = _month_day(match["b"] or match["a"])
    except ValueError as exc:
        raise ValueError(bad) from exc
    if (first[0] == 0) != (last[0] == 0) or (first[0] and last < first):
        raise ValueError(bad)
    return DateRange(first, last, " ".join(text.split()))


@dataclass(frozen=True)
class Hours:
    """`09:00-18:00` local time; an end before the start runs past midnight."""

    start: time
    end: time
    text: str

    def __str__(self) -> str:
        return self.text


def parse_hours(text: Any) -> Hours:
    if isinstance(text, Hours):
        return text
    match = _HOURS_RE.match(text) if isinstance(text, str) else None
    try:
        if match is None:
            raise ValueError(text)
        start, end = time.fromisoformat(match["a"]), time.fromisoformat(match["b"])
    except ValueError as exc:
        raise ValueError(f"cannot read {text!r}: write business hours as '09:00-18:00'") from exc
    return Hours(start, end, " ".join(text.split()))


DateRangeText = Annotated[
    DateRange,
    PlainValidator(parse_date_range),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["2026-07-08..2026-07-09", "11-11"]}),
]
HoursText = Annotated[
    Hours,
    PlainValidator(parse_hours),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["09:00-18:00"]}),
]


class CalendarSpec(_Strict):
    """A named calendar: public holidays of a country, fixed dates, or business hours.

    Exactly one of `holidays`, `dates`, `hours`. Times are read in the scope's marketplace zone
    unless `zone` names another.
    """

    description: str = ""
    holidays: Annotated[str | None, Field(pattern=r"^[A-Z]{2,3}$")] = None
    names: Annotated[list[str], BeforeValidator(_listify), _one_or_many({"type": "string"})] = []
    span: bool = False
    dates: Annotated[
        list[DateRangeText],
        BeforeValidator(_listify),
        _one_or_many({"type": "string"}),
    ] = []
    hours: HoursText | None = None
    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    zone: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> CalendarSpec:
        kinds = [k for k in ("holidays", "dates", "hours") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("a calendar takes exactly one of holidays:, dates: or hours:")
        return self


class Baseline(_Strict):
    """What "usual" is: the same weekday of the last `weeks` weeks, or the last `days` days."""

    weeks: Annotated[int | None, Field(ge=1, le=8)] = None
    days: Annotated[int | None, Field(ge=1, le=56)] = None

    @model_validator(mode="after")
    def _one_kind(self) -> Baseline:
        if (self.weeks is None) == (self.days is None):
            raise ValueError("write weeks: N (same weekday) or days: N (trailing average)")
        return self

    @property
    def key(self) -> str:
        """How a snapshot names the baseline values computed for this spec."""
        return f"weeks={self.weeks}" if self.weeks is not None else f"days={self.days}"

    def past_days(self, day: date) -> list[date]:
        """The local days whose average is "usual" for `day`."""
        if self.weeks is not None:
            return [day - timedelta(weeks=k) for k in range(1, self.weeks + 1)]
        return [day - timedelta(days=k) for k in range(1, (self.days or 0) + 1)]


class NoData(_Strict):
    """A feed silent for `after` (only counted while the `during` calendars are active)."""

    after: DurationText
    during: Annotated[list[str], BeforeValidator(_listify), _one_or_many({"type": "string"})] = []
    severity: Severity = "warning"


_Messages = dict[Language, str]
ScoreBand = Literal["yellow", "red"]


class ScorecardCheck(_Strict):
    """A team's scorecard score over a period, judged against the card's own bands: each
    severity fires when the score is in the band named or a worse one (yellow: below green;
    red: below yellow)."""

    period: Literal["day", "week", "month"] = "week"
    warning: ScoreBand | None = "yellow"
    critical: ScoreBand | None = "red"


class RuleSpec(_Strict):
    """One rule: which KPI, grouped by what, and the thresholds per severity."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        # `kpi:` is required unless the rule judges a scorecard (load says so, at its line).
        json_schema_extra={"anyOf": [{"required": ["kpi"]}, {"required": ["scorecard"]}]},
    )

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)]
    description: str = ""
    # Required for every rule but a `scorecard:` one (load reports it).
    kpi: str | None = None
    by: Annotated[list[ScopeLabel], Field(min_length=1)] = ["store"]
    window: WindowName | None = None
    # Required for every rule but a `no_data:` one (load reports it, so that the message is the
    # same as for any missing key).
    thresholds: dict[Severity, ThresholdText] = {}
    require: Annotated[
        list[GuardText],
        BeforeValidator(_listify),
        _one_or_many({"type": "string", "pattern": GUARD_PATTERN}),
    ] = []
    filters: dict[
        ScopeLabel,
        Annotated[list[str], BeforeValidator(_listify), _one_or_many({"type": "string"})],
    ] = {}
    labels: dict[str, str] = {}
    clear: ThresholdText | None = None
    for_: Annotated[DurationText | None, Field(alias="for")] = None
    repeat: DurationText | None = None
    mute: Annotated[list[str], BeforeValidator(_listify), _one_or_many({"type": "string"})] = []
    message: _Messages = {}
    baseline: Baseline | None = None
    no_data: NoData | None = None
    scorecard: ScorecardCheck | None = None


class Defaults(_Strict):
    """Keys every rule of the file inherits unless it sets them itself (labels are merged)."""

    by: Annotated[list[ScopeLabel], Field(min_length=1)] | None = None
    window: WindowName | None = None
    require: (
        Annotated[
            list[GuardText],
            BeforeValidator(_listify),
            _one_or_many({"type": "string", "pattern": GUARD_PATTERN}),
        ]
        | None
    ) = None
    filters: dict[str, Any] | None = None
    labels: dict[str, str] = {}
    for_: Annotated[DurationText | None, Field(alias="for")] = None
    repeat: DurationText | None = None
    mute: Annotated[
        list[str] | None, BeforeValidator(_listify), _one_or_many({"type": "string"})
    ] = None
    message: _Messages | None = None


class RuleFile(_Strict):
    """A YAML rule file: shared defaults, named calendars, and a list of rules."""

    defaults: Defaults | None = None
    calendars: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")], CalendarSpec] = {}
    rules: list[RuleSpec]


def json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to autocomplete and check rule files."""
    schema = RuleFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kpiwatch rule file"
    return schema
