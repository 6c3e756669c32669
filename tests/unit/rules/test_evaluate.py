"""Rule evaluation against hand-built Snapshots: severities, guards, undefined values, filters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import pytest

from rules.evaluate import evaluate, evaluate_all
from rules.kpis import SKU, STORE, Snapshot, Window
from rules.load import CompiledRule, RuleSet, load_default, load_text

T0 = datetime.fromisoformat("2026-11-23T18:00:00+00:00")
DAY = Window(
    datetime.fromisoformat("2026-11-23T08:00:00+00:00"),
    datetime.fromisoformat("2026-11-24T08:00:00+00:00"),
    "2026-11-23",
)
US_SKU = {"platform": "amazon", "marketplace": "US", "store": "us-1", "sku": "A"}

ACOS = """\
rules:
  - name: acos-high
    kpi: acos
    by: [store, sku]
    thresholds:
      warning: "> 35%"
      critical: "> 60%"
    require: ad_spend >= 20 USD
"""


def rule(text: str = ACOS) -> CompiledRule:
    (compiled,) = load_text(text, "rules.yaml")
    return compiled


def snapshot(
    values: Mapping[str, Decimal | None],
    *,
    labels: Mapping[str, str] = US_SKU,
    level: frozenset[str] = SKU,
    currency: str | None = "USD",
    window_name: str | None = "1d",
) -> Snapshot:
    return Snapshot(
        level, labels, values, T0, DAY, currency, "America/Los_Angeles", window_name=window_name
    )


def acos(value: str, spend: str = "50") -> Snapshot:
    return snapshot({"acos": Decimal(value), "ad_spend": Decimal(spend)})


@pytest.mark.parametrize(
    ("value", "severity"),
    [("0.70", "critical"), ("0.61", "critical"), ("0.60", "warning"), ("0.40", "warning")],
)
def test_breach_gets_the_highest_severity_it_reaches(value: str, severity: str) -> None:
    evaluation = evaluate(rule(), acos(value))
    assert (evaluation.severity, evaluation.judged) == (severity, True)
    assert evaluation.value == Decimal(value)


def test_critical_is_checked_before_warning() -> None:
    evaluation = evaluate(rule(), acos("0.9"))
    assert evaluation.severity == "critical"
    assert str(evaluation.threshold) == "> 60%"


def test_warning_breach_carries_the_warning_threshold() -> None:
    assert str(evaluate(rule(), acos("0.5")).threshold) == "> 35%"


def test_value_within_thresholds_is_judged_not_breached() -> None:
    evaluation = evaluate(rule(), acos("0.35"))
    assert (evaluation.severity, evaluation.judged) == (None, True)
    assert evaluation.value == Decimal("0.35")


def test_guard_not_met_is_not_judged() -> None:
    evaluation = evaluate(rule(), acos("0.9", spend="19.99"))
    assert (evaluation.severity, evaluation.judged) == (None, False)
    assert evaluation.reason == "below the minimum ad_spend >= 20 USD"


def test_guard_met_exactly_lets_the_rule_judge() -> None:
    assert evaluate(rule(), acos("0.9", spend="20")).severity == "critical"


def test_guard_kpi_missing_from_snapshot_is_not_judged() -> None:
    evaluation = evaluate(rule(), snapshot({"acos": Decimal("0.9")}))
    assert evaluation.judged is False


def test_guard_in_another_currency_than_the_snapshot_is_not_judged() -> None:
    yen = snapshot(
        {"acos": Decimal("0.9"), "ad_spend": Decimal("50000")},
        labels={**US_SKU, "marketplace": "JP"},
        currency="JPY",
    )
    evaluation = evaluate(rule(), yen)
    assert (evaluation.severity, evaluation.judged) == (None, False)


def test_guard_with_no_snapshot_currency_is_not_judged() -> None:
    evaluation = evaluate(
        rule(), snapshot({"acos": Decimal("0.9"), "ad_spend": None}, currency=None)
    )
    assert evaluation.judged is False


def test_undefined_value_is_not_judged() -> None:
    evaluation = evaluate(rule(), snapshot({"acos": None, "ad_spend": Decimal("50")}))
    assert (evaluation.severity, evaluation.value, evaluation.judged) == (None, None, False)
    assert evaluation.reason == "acos is undefined"


def test_count_threshold_judges_without_currency() -> None:
    stockout = load_default().rules[0]
    evaluation = evaluate(stockout, snapshot({"available": Decimal(0)}, currency=None))
    assert evaluation.severity == "critical"


def test_money_threshold_in_the_snapshot_currency_is_judged() -> None:
    sales_low = rule(
        'rules:\n  - name: sales-low\n    kpi: gmv\n    thresholds:\n      warning: "< 100 USD"\n'
    )
    store = {"platform": "amazon", "marketplace": "US", "store": "us-1"}
    evaluation = evaluate(sales_low, snapshot({"gmv": Decimal("99")}, labels=store, level=STORE))
    assert evaluation.severity == "warning"


def test_money_threshold_in_another_currency_is_not_judged() -> None:
    sales_low = rule(
        'rules:\n  - name: sales-low\n    kpi: gmv\n    thresholds:\n      warning: "< 100 USD"\n'
    )
    store = {"platform": "amazon", "marketplace": "JP", "store": "jp-1"}
    yen = snapshot({"gmv": Decimal("50")}, labels=store, level=STORE, currency="JPY")
    assert evaluate(sales_low, yen).judged is False


def test_evaluate_all_applies_only_rules_of_the_snapshot_kpis_and_level() -> None:
    evaluations = evaluate_all(load_default(), acos("0.9"))
    assert [e.rule.name for e in evaluations] == ["acos-high"]


def test_evaluate_all_skips_scopes_outside_the_filters() -> None:
    mexico = snapshot(
        {"acos": Decimal("0.9"), "ad_spend": Decimal("50")},
        labels={**US_SKU, "marketplace": "MX"},
    )
    brazil = snapshot(
        {"acos": Decimal("0.9"), "ad_spend": Decimal("50")},
        labels={**US_SKU, "marketplace": "BR"},
    )
    assert [e.rule.name for e in evaluate_all(load_default(), mexico)] == ["acos-high"]
    assert evaluate_all(load_default(), brazil) == []


def test_evaluate_all_picks_the_filter_for_japan() -> None:
    japan = snapshot(
        {"acos": Decimal("0.5"), "ad_spend": Decimal("5000")},
        labels={**US_SKU, "marketplace": "JP"},
        currency="JPY",
    )
    (evaluation,) = evaluate_all(load_default(), japan)
    assert (evaluation.rule.name, evaluation.severity) == ("acos-high-jp", "warning")


def test_filter_on_a_label_the_scope_lacks_excludes_it() -> None:
    only_a = rule(ACOS + "    filters:\n      sku: [A]\n")
    store = {"platform": "amazon", "marketplace": "US", "store": "us-1"}
    rules = RuleSet([only_a])
    assert len(evaluate_all(rules, acos("0.9"))) == 1
    assert evaluate_all(rules, snapshot({"acos": Decimal("0.9")}, labels=store, level=STORE)) == []


def test_several_filters_must_all_pass() -> None:
    strict = rule(ACOS + "    filters:\n      marketplace: US\n      store: [us-2, us-3]\n")
    assert evaluate_all(RuleSet([strict]), acos("0.9")) == []


def test_evaluate_all_on_a_level_without_rules_is_empty() -> None:
    store = {"platform": "amazon", "marketplace": "US", "store": "us-1"}
    values = {"acos": Decimal("0.9"), "ad_spend": Decimal("50")}
    assert evaluate_all(load_default(), snapshot(values, labels=store, level=STORE)) == []
