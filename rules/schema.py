"""The rule file as people write it: pydantic models, strict, exported as JSON Schema.

This is the parsed form only; `rules.load` compiles it into `CompiledRule`s that run.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
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
_UNIT = r"%|[A-Z]{3}"
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
    return [value] if isinstance(value, str) else value


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


class RuleSpec(_Strict):
    """One rule: which KPI, grouped by what, and the thresholds per severity."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)]
    description: str = ""
    kpi: str
    by: Annotated[list[ScopeLabel], Field(min_length=1)] = ["store"]
    window: WindowName | None = None
    thresholds: Annotated[dict[Severity, ThresholdText], Field(min_length=1)]
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


class RuleFile(_Strict):
    """A YAML rule file: a list of rules."""

    rules: list[RuleSpec]


def json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to autocomplete and check rule files."""
    schema = RuleFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kpiwatch rule file"
    return schema
