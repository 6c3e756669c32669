"""Threshold and guard text as rule authors write them; the JSON Schema editors complete from."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from rules.schema import RuleSpec, json_schema, parse_guard, parse_threshold


@pytest.mark.parametrize(
    ("text", "op", "value", "unit"),
    [
        ("> 35%", ">", Decimal("0.35"), "%"),
        (">= 20 USD", ">=", Decimal("20"), "USD"),
        ("< 10", "<", Decimal("10"), None),
        ("<= 0.5", "<=", Decimal("0.5"), None),
        ("> 3000 JPY", ">", Decimal("3000"), "JPY"),
        ("> 12.5%", ">", Decimal("0.125"), "%"),
    ],
)
def test_threshold_reads_op_number_and_unit(
    text: str, op: str, value: Decimal, unit: str | None
) -> None:
    threshold = parse_threshold(text)
    assert (threshold.op, threshold.value, threshold.unit) == (op, value, unit)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("> 1,000", Decimal("1000")),
        ("> 1_000_000", Decimal("1000000")),
        ("< 1,234.50 USD", Decimal("1234.50")),
    ],
)
def test_threshold_number_may_group_digits(text: str, value: Decimal) -> None:
    assert parse_threshold(text).value == value


def test_threshold_tolerates_whitespace_and_keeps_it_tidy_in_text() -> None:
    threshold = parse_threshold("  >=   20    USD  ")
    assert (threshold.op, threshold.value, threshold.unit) == (">=", Decimal("20"), "USD")
    assert str(threshold) == ">= 20 USD"


def test_threshold_without_spaces_is_read() -> None:
    threshold = parse_threshold(">35%")
    assert (threshold.op, threshold.value, threshold.unit) == (">", Decimal("0.35"), "%")


@pytest.mark.parametrize(
    ("op", "value", "holds"),
    [
        (">", "0.36", True),
        (">", "0.35", False),
        (">=", "0.35", True),
        ("<", "0.34", True),
        ("<", "0.35", False),
        ("<=", "0.35", True),
    ],
)
def test_threshold_holds_compares_with_its_op(op: str, value: str, holds: bool) -> None:
    assert parse_threshold(f"{op} 35%").holds(Decimal(value)) is holds


@pytest.mark.parametrize("number", [35, 0.35, Decimal("35")])
def test_threshold_rejects_a_bare_number(number: Any) -> None:
    with pytest.raises(ValueError, match="not a bare number"):
        parse_threshold(number)


@pytest.mark.parametrize("text", ["=> 5", "== 5", "≥ 5", "=5", "5 >"])
def test_threshold_rejects_an_unknown_op(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_threshold(text)


@pytest.mark.parametrize(
    "text",
    ["", "more than 35%", "> -1", "> .5", "> 5e3", "> 5 usd", "> 5 US", "> 5%%", "> 35\uff05"],
)
def test_threshold_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="write it as '> 35%', '< 10' or '>= 20 USD'"):
        parse_threshold(text)


@pytest.mark.parametrize("value", [None, True, ["> 1"], {"gt": 1}])
def test_threshold_rejects_non_text(value: Any) -> None:
    with pytest.raises(ValueError, match="expected a comparison such as '> 35%'"):
        parse_threshold(value)


def test_guard_reads_kpi_and_threshold() -> None:
    guard = parse_guard("ad_spend >= 20 USD")
    assert guard.kpi == "ad_spend"
    assert (guard.threshold.op, guard.threshold.value, guard.threshold.unit) == (
        ">=",
        Decimal("20"),
        "USD",
    )
    assert str(guard) == "ad_spend >= 20 USD"


def test_guard_tolerates_whitespace() -> None:
    guard = parse_guard("  clicks    >   1,000 ")
    assert (guard.kpi, guard.threshold.value) == ("clicks", Decimal("1000"))
    assert str(guard) == "clicks > 1,000"


@pytest.mark.parametrize("text", ["ad_spend", ">= 20 USD", "Ad_Spend >= 20", 20, None])
def test_guard_rejects_text_without_kpi_and_comparison(text: Any) -> None:
    with pytest.raises(ValueError, match="write it as 'ad_spend >= 20 USD'"):
        parse_guard(text)


def test_guard_rejects_a_bad_comparison() -> None:
    with pytest.raises(ValueError, match="cannot read 'ad_spend lots'"):
        parse_guard("ad_spend lots")


def test_rule_spec_accepts_a_single_string_for_require_and_filters() -> None:
    rule = RuleSpec.model_validate(
        {
            "name": "acos-high",
            "kpi": "acos",
            "thresholds": {"warning": "> 35%"},
            "require": "ad_spend >= 20 USD",
            "filters": {"marketplace": "JP"},
        }
    )
    assert [str(g) for g in rule.require] == ["ad_spend >= 20 USD"]
    assert rule.filters == {"marketplace": ["JP"]}


def test_rule_spec_defaults_to_store_scope() -> None:
    rule = RuleSpec.model_validate({"name": "x", "kpi": "gmv", "thresholds": {"warning": "< 1"}})
    assert rule.by == ["store"]


def test_json_schema_is_json_serialisable() -> None:
    schema = json_schema()
    assert json.loads(json.dumps(schema)) == schema


def test_json_schema_names_draft_and_title() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "kpiwatch rule file"
    assert schema["required"] == ["rules"]
    assert schema["additionalProperties"] is False


def test_json_schema_lists_every_rule_key() -> None:
    rule = json_schema()["$defs"]["RuleSpec"]
    assert set(rule["properties"]) == {
        "name",
        "description",
        "kpi",
        "by",
        "window",
        "thresholds",
        "require",
        "filters",
        "labels",
        "clear",
        "for",
        "repeat",
        "mute",
        "message",
        "baseline",
        "no_data",
        "scorecard",
    }
    assert set(rule["required"]) == {"name"}
    # kpi: is required unless the rule judges a team's scorecard.
    assert rule["anyOf"] == [{"required": ["kpi"]}, {"required": ["scorecard"]}]
    assert rule["additionalProperties"] is False


def test_json_schema_offers_the_severities_as_threshold_keys() -> None:
    thresholds = json_schema()["$defs"]["RuleSpec"]["properties"]["thresholds"]
    assert thresholds["propertyNames"] == {"enum": ["warning", "critical"]}
    assert thresholds["additionalProperties"]["type"] == "string"


def test_json_schema_threshold_pattern_is_ecma_262() -> None:
    thresholds = json_schema()["$defs"]["RuleSpec"]["properties"]["thresholds"]
    assert "(?P<" not in thresholds["additionalProperties"]["pattern"]


def _accepts_string(node: dict[str, Any]) -> bool:
    if node.get("type") == "string":
        return True
    return any(_accepts_string(option) for option in node.get("anyOf", []))


def test_json_schema_accepts_the_single_string_forms_the_model_accepts() -> None:
    properties = json_schema()["$defs"]["RuleSpec"]["properties"]
    assert _accepts_string(properties["require"])
    assert _accepts_string(properties["filters"]["additionalProperties"])
