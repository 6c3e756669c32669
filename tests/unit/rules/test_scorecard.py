"""Team scorecards: scores computed by hand, undefined KPIs and missing targets, and scorecard
files checked like rule files (every problem, file:line, JSON Schema)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from rules.errors import ConfigError
from rules.load import load_paths
from rules.scorecard import (
    Score,
    Scorecard,
    attainment,
    load_scorecard_text,
    score,
    scorecard_json_schema,
)

CARD = """\
scorecards:
  ops:
    bands: {green: 90, yellow: 70}
    kpis:
      - {kpi: gmv, target: {day: 1000, week: 5000}, weight: 3, direction: higher}
      - {kpi: acos, target: "25%", weight: 1, direction: lower}
      - {kpi: cancel_rate, target: 0.02, weight: 1, direction: lower}
      - {kpi: target_attainment, weight: 2, direction: higher}
"""


def card() -> Scorecard:
    return load_scorecard_text(CARD, "cards.yaml")["ops"]


def d(text: str) -> Decimal:
    return Decimal(text)


def brief(result: Score) -> list[tuple[str, str | None, str | None]]:
    return [
        (k.kpi, None if k.attainment is None else str(k.attainment), k.band) for k in result.kpis
    ]


def test_weighted_attainment_capped_per_kpi() -> None:
    values = {"gmv": d("800"), "acos": d("0.5"), "cancel_rate": d("0.01")}
    result = score(card(), "day", values)
    # gmv 800/1000 = 80; acos lower is better: 0.25/0.5 = 50; cancel 0.02/0.01 = 200 -> 100;
    # target_attainment is kept month to date only: no value for a day, left out.
    # (3 x 80 + 1 x 50 + 1 x 100) / (3 + 1 + 1) = 390 / 5 = 78
    assert result.score == d("78.00")
    assert result.band == "yellow"
    assert brief(result) == [
        ("gmv", "80.00", "yellow"),
        ("acos", "50.00", "red"),
        ("cancel_rate", "100.00", "green"),
        ("target_attainment", None, None),
    ]


def test_an_undefined_kpi_is_left_out_with_its_weight() -> None:
    # ACoS with no ad sales is undefined (None): neither 0 nor 100.
    values = {"gmv": d("800"), "acos": None, "cancel_rate": d("0.01")}
    result = score(card(), "day", values, {"acos": "undefined: no ad sales"})
    # (3 x 80 + 1 x 100) / (3 + 1) = 340 / 4 = 85
    assert result.score == d("85.00")
    assert result.band == "yellow"
    acos = result.kpis[1]
    assert (acos.value, acos.attainment, acos.band, acos.note) == (
        None,
        None,
        None,
        "undefined: no ad sales",
    )


def test_a_period_without_a_target_leaves_the_kpi_out() -> None:
    values = {"gmv": d("2600"), "acos": d("0.25"), "target_attainment": d("0.45")}
    result = score(card(), "month", values)
    # gmv has day and week targets only; acos 100; attainment 0.45 / 1 = 45 (weight 2);
    # cancel_rate has no value. (1 x 100 + 2 x 45) / 3 = 190 / 3 = 63.333... -> 63.33
    assert result.score == d("63.33")
    assert result.band == "red"
    gmv = result.kpis[0]
    assert (gmv.value, gmv.target, gmv.attainment, gmv.note) == (
        d("2600"),
        None,
        None,
        "no month target",
    )


def test_no_kpi_with_a_value_is_no_score_not_zero() -> None:
    result = score(card(), "week", {"acos": None})
    assert (result.score, result.band) == (None, None)


def test_attainment_edges() -> None:
    assert attainment(d("0"), d("0.25"), "lower") == 100  # nothing spent against a ceiling
    assert attainment(d("-0.10"), d("0.20"), "higher") == 0  # a negative margin
    assert attainment(d("1.5"), d("1"), "higher") == 100  # capped
    assert attainment(d("0.125"), d("0.25"), "higher") == 50


def test_a_kpi_can_have_its_own_bands() -> None:
    text = """\
scorecards:
  ads:
    kpis:
      - {kpi: ctr, target: "1%", direction: higher, bands: {green: 60, yellow: 40}}
"""
    ads = load_scorecard_text(text, "c.yaml")["ads"]
    result = score(ads, "week", {"ctr": d("0.0065")})
    assert brief(result) == [("ctr", "65.00", "green")]
    assert result.band == "red"  # the card's default bands: 90 / 70


BAD = """\
scorecards:
  ops:
    kpis:
      - {kpi: gmv, direction: higher}
      - {kpi: refund_rate, target: 1, direction: higher}
      - {kpi: available, target: 1, direction: higher}
      - {kpi: acos, target: 250, direction: lower}
      - {kpi: orders, target: 10, direction: up}
    bands: {green: 50, yellow: 70}
  ads:
    kpis: []
    colour: red
"""


def test_every_problem_of_a_scorecard_file_at_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_scorecard_text(BAD, "cards.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "cards.yaml:8: direction: Input should be 'higher' or 'lower'",
        "cards.yaml:11: kpis: List should have at least 1 item after validation, not 0",
        "cards.yaml:12: unknown key 'colour'",
    ]
    fixed = BAD.replace("direction: up", "direction: higher").replace(
        "  ads:\n    kpis: []\n    colour: red\n", ""
    )
    with pytest.raises(ConfigError) as caught:
        load_scorecard_text(fixed, "cards.yaml")
    known = "per team: acos, ad_orders, ad_sales, ad_spend"
    messages = [str(p) for p in caught.value.problems]
    assert messages[0] == "cards.yaml:4: scorecard 'ops': gmv: missing required key 'target'"
    assert messages[1].startswith(
        f"cards.yaml:5: scorecard 'ops': unknown kpi 'refund_rate' ({known}"
    )
    assert messages[2:] == [
        "cards.yaml:6: scorecard 'ops': available is not kept per team over time",
        "cards.yaml:7: scorecard 'ops': acos is a ratio: write its target as 0.25 or '25%'",
        "cards.yaml:9: scorecard 'ops': bands: green must be above yellow",
    ]


def test_a_target_that_is_not_a_number_names_its_line() -> None:
    text = "scorecards:\n  ops:\n    kpis:\n      - kpi: gmv\n        target: 5000 USD\n"
    text += "        direction: higher\n"
    with pytest.raises(ConfigError) as caught:
        load_scorecard_text(text, "c.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "c.yaml:5: target: cannot read '5000 USD': write a number (1200, 0.35) or a percentage "
        "('35%'); money is in the reporting currency",
    ]


def test_scorecards_load_next_to_the_rules_and_a_team_carded_twice_is_a_problem(
    tmp_path: Path,
) -> None:
    (tmp_path / "cards.yaml").write_text(CARD, encoding="utf-8")
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: score-low\n    scorecard: {period: week}\n    by: [team]\n",
        encoding="utf-8",
    )
    loaded = load_paths([tmp_path])
    assert set(loaded.scorecards) == {"ops"}
    assert loaded.rules[0].cards["ops"].team == "ops"
    (tmp_path / "more.yaml").write_text(CARD, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_paths([tmp_path])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'more.yaml'}:2: scorecard 'ops' is already defined in "
        f"{tmp_path / 'cards.yaml'}:2"
    ]


def test_a_scorecard_rule_without_scorecards_is_a_problem(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: score-low\n    scorecard: {period: week}\n    by: [team]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_paths([rules])
    assert [str(p) for p in caught.value.problems] == [
        f"{rules}:2: rule 'score-low': scorecard: needs a scorecards: file loaded with the "
        "rules (none found)"
    ]


def test_a_rule_still_needs_a_kpi_unless_it_judges_a_scorecard(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: x\n    thresholds: {warning: '> 1'}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_paths([rules])
    assert [str(p) for p in caught.value.problems] == [f"{rules}:2: missing required key 'kpi'"]


def test_scorecard_json_schema() -> None:
    schema = scorecard_json_schema()
    assert schema["title"] == "kpiwatch scorecard file"
    assert schema["required"] == ["scorecards"]
    kpi = schema["$defs"]["ScoreKpiSpec"]
    assert set(kpi["properties"]) == {"kpi", "target", "weight", "direction", "bands"}
    assert kpi["properties"]["direction"]["enum"] == ["higher", "lower"]
    assert schema["$defs"]["ScorecardSpec"]["additionalProperties"] is False


def test_a_scorecard_rule_takes_the_files_defaults_it_can_use(tmp_path: Path) -> None:
    (tmp_path / "cards.yaml").write_text(CARD, encoding="utf-8")
    (tmp_path / "rules.yaml").write_text(
        "defaults:\n  window: 7d\n  require: orders >= 5\n  labels: {team_lead: ana}\n"
        "rules:\n  - name: score-low\n    scorecard: {period: week}\n    by: [team]\n",
        encoding="utf-8",
    )
    (rule,) = load_paths([tmp_path]).rules
    assert (rule.window, rule.guards, rule.labels) == ("7d", (), (("team_lead", "ana"),))
