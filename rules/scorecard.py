"""Team scorecards: per team (or person) a few KPIs, each with a target, a weight and a
direction, scored as weighted attainment (0-100) with red / yellow / green bands.

Pure like the rest of `rules`: the parsed file (`ScorecardFile`), the checked cards
(`Scorecard`) and the arithmetic (`score`). The KPI values come from the engine's own
calculation (`streams.scorecards` reads them as `kpiwatch kpis` does); nothing here computes a
KPI.

    attainment = value / target        (higher is better)
               = target / value        (lower is better; a value of 0 attains fully)
    capped to 0..100 per KPI, so one KPI far over target cannot hide another far under it;
    score      = sum(weight x attainment) / sum(weight), over the KPIs with a value.

A KPI that is undefined for the period (ACoS with no ad sales, attainment without a monthly
target, money without an FX rate) is left out and its weight with it; the card says which and
why. With no KPI defined there is no score (null), never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from rules.errors import ConfigError, Problem
from rules.kpis import CATALOG, TEAM, WindowName
from rules.yamlfile import line_of, parse_yaml, plain, problems_of

Period = Literal["day", "week", "month"]
Direction = Literal["higher", "lower"]
Band = Literal["green", "yellow", "red"]
# The catalog window each period reads: the local day, the last 7 local days, the month so far.
PERIOD_WINDOWS: Final[Mapping[str, WindowName]] = {"day": "1d", "week": "7d", "month": "mtd"}
HUNDRED: Final = Decimal(100)
SCORE_QUANTUM: Final = Decimal("0.01")
# KPIs that are already a share of a target: 100% is the natural target.
TARGET_RATIOS: Final = frozenset({"target_attainment", "pace"})


def _number(value: Any) -> Any:
    """`0.3`, `"30%"`, `1200`, `"1,200"` as a Decimal (YAML floats through their text)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        try:
            if text.endswith("%"):
                return Decimal(text[:-1].strip()) / HUNDRED
            return Decimal(text)
        except InvalidOperation:
            raise ValueError(
                f"cannot read {value!r}: write a number (1200, 0.35) or a percentage ('35%'); "
                "money is in the reporting currency"
            ) from None
    return value


Number = Annotated[
    Decimal,
    BeforeValidator(_number),
    WithJsonSchema(
        {"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^\s*[0-9.,_]+\s*%?\s*$"}]}
    ),
]
Percent = Annotated[Decimal, Field(ge=0, le=100)]
PositiveNumber = Annotated[Number, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bands(_Strict):
    """Score (or attainment) from which a card is green, and from which it is yellow; below
    yellow it is red. On the 0-100 scale."""

    green: Percent = Decimal(90)
    yellow: Percent = Decimal(70)


class ScoreKpiSpec(_Strict):
    """One KPI of a card."""

    kpi: str
    # In the KPI's unit as `kpiwatch kpis` prints it (ratios as 0.25 or '25%', money in the
    # reporting currency): one for every period, or one per period (`{week: 2000, month:
    # 8000}`: a total grows with its period). Optional only for target_attainment and pace
    # (default 100%). A period without a target leaves the KPI out of that period's score.
    target: PositiveNumber | dict[Period, PositiveNumber] | None = None
    weight: Annotated[Number, Field(gt=0)] = Decimal(1)
    direction: Direction
    bands: Bands | None = None

    @field_validator("target", mode="before")
    @classmethod
    def _read_target(cls, value: Any) -> Any:
        # Read here, so that a bad target is one message, not one per member of the union.
        if isinstance(value, dict):
            return {key: _number(item) for key, item in value.items()}
        return _number(value)


class ScorecardSpec(_Strict):
    """A team's (or a person's) card: its KPIs and the bands of the whole score."""

    description: str = ""
    kpis: Annotated[list[ScoreKpiSpec], Field(min_length=1)]
    bands: Bands = Bands()


class ScorecardFile(_Strict):
    """A YAML scorecard file: one card per team or person, as named in the teams file."""

    scorecards: Annotated[dict[str, ScorecardSpec], Field(min_length=1)]


class _Shell(_Strict):
    """The file's outer shape; each card is validated on its own, with its own problems."""

    scorecards: Annotated[dict[str, Any], Field(min_length=1)]


@dataclass(frozen=True)
class ScoreKpi:
    kpi: str
    targets: Mapping[str, Decimal]  # per period
    weight: Decimal
    direction: Direction
    bands: Bands


@dataclass(frozen=True)
class Scorecard:
    """A checked card, defaults resolved: what `score` runs."""

    team: str
    kpis: tuple[ScoreKpi, ...]
    bands: Bands
    file: str
    line: int | None

    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k.kpi for k in self.kpis))


@dataclass(frozen=True)
class KpiScore:
    kpi: str
    value: Decimal | None
    target: Decimal | None
    weight: Decimal
    direction: Direction
    attainment: Decimal | None  # 0..100, None when the value is undefined
    band: Band | None
    note: str = ""


@dataclass(frozen=True)
class Score:
    team: str
    period: str
    score: Decimal | None  # 0..100, None when no KPI of the card has a value and a target
    band: Band | None
    kpis: tuple[KpiScore, ...]


def attainment(value: Decimal, target: Decimal, direction: Direction) -> Decimal:
    """How much of the target a value attains, in percent, capped to 0..100 (unrounded)."""
    if direction == "higher":
        found = value / target * HUNDRED
    elif value <= 0:
        found = HUNDRED  # nothing spent against a ceiling: fully met
    else:
        found = target / value * HUNDRED
    return min(max(found, Decimal(0)), HUNDRED)


def band_of(value: Decimal, bands: Bands) -> Band:
    if value >= bands.green:
        return "green"
    return "yellow" if value >= bands.yellow else "red"


def score(
    card: Scorecard,
    period: str,
    values: Mapping[str, Decimal | None],
    notes: Mapping[str, str] | None = None,
) -> Score:
    """The card over one period's KPI values (`notes`: why a missing value is missing)."""
    kpis: list[KpiScore] = []
    weighted, weights = Decimal(0), Decimal(0)
    for item in card.kpis:
        value, target = values.get(item.kpi), item.targets.get(period)
        if value is None or target is None:
            note = f"no {period} target" if target is None else None
            note = note or (notes or {}).get(item.kpi) or "undefined for this period"
            kpis.append(
                KpiScore(item.kpi, value, target, item.weight, item.direction, None, None, note)
            )
            continue
        reached = attainment(value, target, item.direction)
        weighted += item.weight * reached
        weights += item.weight
        shown = _rounded(reached)
        light = band_of(shown, item.bands)
        kpis.append(KpiScore(item.kpi, value, target, item.weight, item.direction, shown, light))
    total = _rounded(weighted / weights) if weights else None
    band = band_of(total, card.bands) if total is not None else None
    return Score(card.team, period, total, band, tuple(kpis))


def _rounded(value: Decimal) -> Decimal:
    return value.quantize(SCORE_QUANTUM, rounding=ROUND_HALF_EVEN)


# ---------------------------------------------------------------- loading


def is_scorecard_document(document: Any) -> bool:
    """A YAML document that is a scorecard file (it may sit in a folder of rule files)."""
    return isinstance(document, dict) and "scorecards" in document


def load_scorecard_text(text: str, source: str) -> dict[str, Scorecard]:
    """Every card of one file; raises ConfigError with every problem, each at its line."""
    return scorecards_of(parse_yaml(text, source, "scorecards"), source)


def scorecards_of(document: Any, source: str) -> dict[str, Scorecard]:
    problems: list[Problem] = []
    cards: dict[str, Scorecard] = {}
    try:
        shell = _Shell.model_validate(plain(document))
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, document, (), source)) from None
    for team, raw in shell.scorecards.items():
        where = ("scorecards", team)
        try:
            spec = ScorecardSpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(problems_of(exc, document, where, source))
            continue
        found = [
            Problem(source, line_of(document, (*where, *loc)), f"scorecard {team!r}: {message}")
            for loc, message in _check(spec)
        ]
        problems.extend(found)
        if not found:
            cards[str(team)] = _compile(str(team), spec, source, line_of(document, where))
    if problems:
        raise ConfigError(problems)
    return cards


def _check(spec: ScorecardSpec) -> list[tuple[Sequence[str | int], str]]:
    """Checks against the KPI catalog, as (where, message), all reported together."""
    problems: list[tuple[Sequence[str | int], str]] = []
    for index, item in enumerate(spec.kpis):
        at = ("kpis", index)
        known = CATALOG.get(item.kpi)
        if known is None:
            names = ", ".join(sorted(n for n, s in CATALOG.items() if TEAM in s.levels))
            problems.append(((*at, "kpi"), f"unknown kpi {item.kpi!r} (per team: {names})"))
            continue
        if TEAM not in known.levels or not known.windowed:
            problems.append(((*at, "kpi"), f"{item.kpi} is not kept per team over time"))
        if item.target is None and item.kpi not in TARGET_RATIOS:
            problems.append((at, f"{item.kpi}: missing required key 'target'"))
        targets = _targets(item).values() if item.target is not None else ()
        if known.unit == "ratio" and any(t > 100 for t in targets):
            problems.append(
                ((*at, "target"), f"{item.kpi} is a ratio: write its target as 0.25 or '25%'")
            )
    for where, bands in [(("bands",), spec.bands)] + [
        (("kpis", i, "bands"), k.bands) for i, k in enumerate(spec.kpis) if k.bands is not None
    ]:
        if bands.green <= bands.yellow:
            problems.append((where, "bands: green must be above yellow"))
    return problems


def _compile(team: str, spec: ScorecardSpec, file: str, line: int | None) -> Scorecard:
    kpis = tuple(
        ScoreKpi(item.kpi, _targets(item), item.weight, item.direction, item.bands or spec.bands)
        for item in spec.kpis
    )
    return Scorecard(team, kpis, spec.bands, file, line)


def _targets(item: ScoreKpiSpec) -> dict[str, Decimal]:
    if item.target is None:  # target_attainment, pace: the monthly target itself is 100%
        return dict.fromkeys(PERIOD_WINDOWS, Decimal(1))
    if isinstance(item.target, dict):
        return {str(period): target for period, target in item.target.items()}
    return dict.fromkeys(PERIOD_WINDOWS, item.target)


def scorecard_json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to autocomplete and check scorecard files."""
    schema = ScorecardFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kpiwatch scorecard file"
    return schema


def merge(groups: Sequence[Mapping[str, Scorecard]]) -> tuple[dict[str, Scorecard], list[Problem]]:
    """The cards of several files; a team carded twice is a problem at its second place."""
    cards: dict[str, Scorecard] = {}
    problems: list[Problem] = []
    for group in groups:
        for team, card in group.items():
            first = cards.setdefault(team, card)
            if first is not card:
                message = f"scorecard {team!r} is already defined in {first.file}:{first.line}"
                problems.append(Problem(card.file, card.line, message))
    return cards, problems
