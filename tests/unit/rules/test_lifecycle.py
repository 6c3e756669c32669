"""Alert lifecycle per fingerprint: fire once, re-notify on severity change, resolve."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rules.alerts import Alert, fingerprint, format_value
from rules.evaluate import Evaluation, evaluate
from rules.kpis import SKU, Snapshot, Window
from rules.lifecycle import advance
from rules.load import load_text

T0 = datetime.fromisoformat("2026-11-23T18:00:00+00:00")
DAY1 = Window(
    datetime.fromisoformat("2026-11-23T08:00:00+00:00"),
    datetime.fromisoformat("2026-11-24T08:00:00+00:00"),
    "2026-11-23",
)
DAY2 = Window(DAY1.end, DAY1.end + timedelta(days=1), "2026-11-24")
US_SKU = {"platform": "amazon", "marketplace": "US", "store": "us-1", "sku": "A"}

RULES = load_text(
    """\
rules:
  - name: acos-high
    kpi: acos
    by: [store, sku]
    thresholds:
      warning: "> 35%"
      critical: "> 60%"
    require: ad_spend >= 20 USD
    labels:
      team: advertising
  - name: stockout
    kpi: available
    by: [store, sku]
    thresholds:
      critical: "< 1"
      warning: "< 10"
""",
    "rules.yaml",
)
ACOS, STOCKOUT = RULES


def acos(
    value: str,
    *,
    spend: str = "50",
    window: Window = DAY1,
    at: datetime = T0,
    labels: Mapping[str, str] = US_SKU,
) -> Evaluation:
    values = {"acos": Decimal(value), "ad_spend": Decimal(spend)}
    snap = Snapshot(SKU, labels, values, at, window, "USD", "America/Los_Angeles")
    return evaluate(ACOS, snap)


def stock(available: int, at: datetime = T0) -> Evaluation:
    snap = Snapshot(SKU, US_SKU, {"available": Decimal(available)}, at, zone="America/New_York")
    return evaluate(STOCKOUT, snap)


def run(states: dict[str, Any], *evaluations: Evaluation) -> list[Alert | None]:
    return [advance(states, evaluation) for evaluation in evaluations]


def test_first_breach_fires() -> None:
    states: dict[str, Any] = {}
    alert = advance(states, acos("0.40"))
    assert alert is not None
    assert (alert.rule, alert.severity, alert.status) == ("acos-high", "warning", "firing")
    assert alert.value == Decimal("0.40")
    assert alert.threshold == "> 35%"
    assert len(states) == 1


def test_no_breach_and_nothing_firing_sends_nothing() -> None:
    states: dict[str, Any] = {}
    assert advance(states, acos("0.10")) is None
    assert states == {}


def test_same_severity_again_sends_nothing() -> None:
    states: dict[str, Any] = {}
    first, again, higher_value = run(
        states, acos("0.40"), acos("0.45", at=T0 + timedelta(minutes=5)), acos("0.59")
    )
    assert first is not None
    assert (again, higher_value) == (None, None)


def test_escalation_from_warning_to_critical_fires() -> None:
    states: dict[str, Any] = {}
    _, escalated = run(states, acos("0.40"), acos("0.70"))
    assert escalated is not None
    assert (escalated.severity, escalated.status, escalated.threshold) == (
        "critical",
        "firing",
        "> 60%",
    )


def test_de_escalation_from_critical_to_warning_fires() -> None:
    states: dict[str, Any] = {}
    _, lowered = run(states, acos("0.70"), acos("0.40"))
    assert lowered is not None
    assert (lowered.severity, lowered.status) == ("warning", "firing")


def test_resolve_carries_the_last_severity_and_the_current_value() -> None:
    states: dict[str, Any] = {}
    _, _, resolved = run(states, acos("0.40"), acos("0.70"), acos("0.20"))
    assert resolved is not None
    assert (resolved.status, resolved.severity) == ("resolved", "critical")
    assert resolved.value == Decimal("0.20")
    assert firing(states) == {}


def test_resolve_and_fire_share_the_fingerprint() -> None:
    states: dict[str, Any] = {}
    fired, resolved = run(states, acos("0.40"), acos("0.20"))
    assert fired is not None
    assert resolved is not None
    assert fired.fingerprint == resolved.fingerprint


def test_breach_after_resolve_fires_again() -> None:
    states: dict[str, Any] = {}
    alerts = run(states, acos("0.40"), acos("0.20"), acos("0.40"))
    assert [a.status if a else None for a in alerts] == ["firing", "resolved", "firing"]


def test_unjudged_guard_changes_nothing_while_firing() -> None:
    states: dict[str, Any] = {}
    advance(states, acos("0.70"))
    before = json.loads(json.dumps(states))
    assert advance(states, acos("0.10", spend="5")) is None
    assert states == before


def test_unjudged_undefined_value_does_not_resolve() -> None:
    states: dict[str, Any] = {}
    advance(states, acos("0.70"))
    undefined = Snapshot(SKU, US_SKU, {"acos": None, "ad_spend": Decimal("50")}, T0, DAY1, "USD")
    assert advance(states, evaluate(ACOS, undefined)) is None
    assert len(states) == 1


def test_unjudged_breach_does_not_fire() -> None:
    states: dict[str, Any] = {}
    assert advance(states, acos("0.90", spend="1")) is None
    assert states == {}


def test_stale_window_is_ignored_while_firing() -> None:
    states: dict[str, Any] = {}
    advance(states, acos("0.40", window=DAY2, at=T0 + timedelta(days=1)))
    late_ok, late_critical = run(states, acos("0.10", window=DAY1), acos("0.90", window=DAY1))
    assert (late_ok, late_critical) == (None, None)
    assert len(states) == 1


def test_a_newer_window_without_breach_resolves() -> None:
    states: dict[str, Any] = {}
    advance(states, acos("0.40", window=DAY1))
    resolved = advance(states, acos("0.10", window=DAY2, at=T0 + timedelta(days=1)))
    assert resolved is not None
    assert resolved.status == "resolved"
    assert resolved.window_start == DAY2.start


def test_distinct_labels_get_distinct_fingerprints() -> None:
    states: dict[str, Any] = {}
    sku_a, sku_b = run(states, acos("0.40"), acos("0.40", labels={**US_SKU, "sku": "B"}))
    assert sku_a is not None
    assert sku_b is not None
    assert sku_a.fingerprint != sku_b.fingerprint
    assert len(states) == 2


def test_resolving_one_scope_leaves_the_other_firing() -> None:
    states: dict[str, Any] = {}
    sku_b = {**US_SKU, "sku": "B"}
    run(states, acos("0.40"), acos("0.40", labels=sku_b))
    resolved = advance(states, acos("0.10"))
    assert resolved is not None
    assert resolved.labels["sku"] == "A"
    assert len(firing(states)) == 1


def test_different_rules_on_one_scope_fire_separately() -> None:
    states: dict[str, Any] = {}
    acos_alert, stock_alert = run(states, acos("0.40"), stock(0))
    assert acos_alert is not None
    assert stock_alert is not None
    assert acos_alert.fingerprint != stock_alert.fingerprint


def test_fingerprint_is_rule_plus_alert_labels() -> None:
    states: dict[str, Any] = {}
    alert = advance(states, acos("0.40"))
    assert alert is not None
    assert alert.labels == {**US_SKU, "team": "advertising"}
    assert alert.fingerprint == fingerprint("acos-high", alert.labels)
    assert list(states) == [alert.fingerprint]


def test_fingerprint_ignores_label_order() -> None:
    assert fingerprint("r", {"a": "1", "b": "2"}) == fingerprint("r", {"b": "2", "a": "1"})
    assert fingerprint("r", {"a": "1"}) != fingerprint("s", {"a": "1"})


def test_scope_label_wins_over_rule_label_on_a_clash() -> None:
    states: dict[str, Any] = {}
    alert = advance(states, acos("0.40", labels={**US_SKU, "team": "jp-ops"}))
    assert alert is not None
    assert alert.labels["team"] == "jp-ops"


def test_states_are_json_serialisable() -> None:
    states: dict[str, Any] = {}
    advance(states, acos("0.70"))
    advance(states, stock(0))
    assert json.loads(json.dumps(states)) == states


def test_alert_json_has_the_fields_sinks_rely_on() -> None:
    alert = advance({}, acos("0.40"))
    assert alert is not None
    data = json.loads(alert.model_dump_json())
    assert {
        "rule",
        "severity",
        "status",
        "labels",
        "value",
        "threshold",
        "window_start",
        "window_end",
        "at",
    } <= set(data)
    assert data["rule"] == "acos-high"
    assert data["severity"] == "warning"
    assert data["status"] == "firing"
    assert data["labels"] == {**US_SKU, "team": "advertising"}
    assert Decimal(data["value"]) == Decimal("0.40")
    assert data["threshold"] == "> 35%"
    assert datetime.fromisoformat(data["window_start"]) == DAY1.start
    assert datetime.fromisoformat(data["window_end"]) == DAY1.end
    assert datetime.fromisoformat(data["at"]) == T0


def test_latest_value_alert_has_no_window() -> None:
    alert = advance({}, stock(3))
    assert alert is not None
    assert (alert.severity, alert.window_start, alert.window_end) == ("warning", None, None)


def test_latest_value_resolves_without_windows() -> None:
    states: dict[str, Any] = {}
    alerts = run(states, stock(0), stock(5, T0 + timedelta(hours=1)), stock(50))
    assert [(a.status, a.severity) if a else None for a in alerts] == [
        ("firing", "critical"),
        ("firing", "warning"),
        ("resolved", "warning"),
    ]


def test_firing_summary_reads_for_a_person() -> None:
    alert = advance({}, acos("0.40"))
    assert alert is not None
    assert alert.summary == (
        "[WARNING] acos-high: acos 40.00% > 35%; platform=amazon marketplace=US store=us-1 "
        "sku=A on 2026-11-23 (America/Los_Angeles)"
    )


def test_resolved_summary_reads_for_a_person() -> None:
    states: dict[str, Any] = {}
    _, resolved = run(states, acos("0.40"), acos("0.20"))
    assert resolved is not None
    assert resolved.summary == (
        "RESOLVED acos-high: acos is 20.00% now; platform=amazon marketplace=US store=us-1 "
        "sku=A on 2026-11-23 (America/Los_Angeles)"
    )


def test_alert_key_tells_transitions_apart() -> None:
    states: dict[str, Any] = {}
    fired, resolved = run(states, acos("0.40"), acos("0.20"))
    assert fired is not None
    assert resolved is not None
    assert fired.key != resolved.key
    assert fired.key == f"{fired.fingerprint}:firing:warning:{T0.isoformat()}"


def test_resolved_alert_shows_the_threshold_of_its_severity() -> None:
    states: dict[str, Any] = {}
    _, resolved = run(states, acos("0.70"), acos("0.20"))
    assert resolved is not None
    assert (resolved.severity, resolved.threshold) == ("critical", "> 60%")


@pytest.mark.parametrize(
    ("value", "unit", "currency", "text"),
    [
        (Decimal("0.625"), "ratio", None, "62.50%"),
        (Decimal("1234"), "money", "USD", "1,234.00 USD"),
        (Decimal("1234.5"), "money", None, "1,234.50"),
        (Decimal("3"), "count", None, "3"),
        (Decimal("12000"), "count", None, "12,000"),
        (Decimal("2.5"), "count", None, "2.50"),
        (None, "ratio", None, "undefined"),
    ],
)
def test_format_value_is_what_a_person_reads(
    value: Decimal | None, unit: str, currency: str | None, text: str
) -> None:
    assert format_value(value, unit, currency) == text


def test_late_older_window_after_resolve_does_not_fire_again() -> None:
    states: dict[str, Any] = {}
    advance(states, acos("0.40", window=DAY1))
    advance(states, acos("0.10", window=DAY2, at=T0 + timedelta(days=1)))
    late = acos("0.45", window=DAY1, at=T0 + timedelta(days=1, minutes=1))
    assert advance(states, late) is None


def firing(states: dict[str, Any]) -> dict[str, Any]:
    """The fingerprints that are firing (resolved ones keep a record of their newest window)."""
    return {key: state for key, state in states.items() if state["severity"] is not None}
