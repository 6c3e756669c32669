"""The lifecycle's timing: `for:` (pending), `clear:` (hysteresis), `repeat:` and mute calendars,
all driven by event time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.alerts import Alert
from rules.evaluate import Evaluation, evaluate
from rules.kpis import SKU, Snapshot, Window
from rules.lifecycle import advance
from rules.load import CompiledRule, load_text

T0 = datetime.fromisoformat("2026-11-23T10:00:00+00:00")
DAY = Window(T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1), "2026-11-23")
LABELS = {"platform": "amazon", "marketplace": "US", "store": "us-1", "sku": "A"}


def compile_rule(extra: str) -> CompiledRule:
    text = f"""\
calendars:
  promo:
    dates: 2026-11-24
    zone: UTC
rules:
  - name: acos-high
    kpi: acos
    by: [store, sku]
    thresholds:
      warning: "> 35%"
      critical: "> 60%"
{extra}"""
    (rule,) = load_text(text, "rules.yaml")
    return rule


def acos(rule: CompiledRule, value: str, minutes: int = 0) -> Evaluation:
    at = T0 + timedelta(minutes=minutes)
    day = Window(DAY.start + timedelta(days=(at - T0).days), DAY.end, DAY.label)
    snap = Snapshot(SKU, LABELS, {"acos": Decimal(value)}, at, day, "USD", "UTC")
    return evaluate(rule, snap)


def transitions(rule: CompiledRule, *steps: tuple[str, int]) -> list[tuple[str, str, bool, int]]:
    """(status, severity, muted, minute) of every alert a sequence of (value, minute) makes."""
    states: dict[str, Any] = {}
    out = []
    for value, minute in steps:
        alert = advance(states, acos(rule, value, minute))
        if alert is not None:
            out.append(_brief(alert))
        json.dumps(states)  # the state must stay JSON for the Faust table
    return out


def _brief(alert: Alert) -> tuple[str, str, bool, int]:
    minute = int((alert.at - T0).total_seconds() // 60)
    return (alert.status, alert.severity, alert.muted, minute)


def test_pending_that_never_fires_sends_nothing() -> None:
    rule = compile_rule("    for: 30m\n")
    assert transitions(rule, ("0.40", 0), ("0.45", 20), ("0.20", 25), ("0.40", 40)) == []


def test_breach_held_for_its_duration_fires_once() -> None:
    rule = compile_rule("    for: 30m\n")
    steps = [("0.40", 0), ("0.45", 20), ("0.50", 30), ("0.50", 45)]
    assert transitions(rule, *steps) == [("firing", "warning", False, 30)]


def test_pending_restarts_after_the_value_recovers() -> None:
    rule = compile_rule("    for: 30m\n")
    steps = [("0.40", 0), ("0.20", 10), ("0.40", 20), ("0.40", 45), ("0.40", 50)]
    assert transitions(rule, *steps) == [("firing", "warning", False, 50)]


def test_flapping_without_hysteresis_fires_and_resolves_each_time() -> None:
    rule = compile_rule("")
    steps = [("0.36", 0), ("0.34", 1), ("0.36", 2), ("0.34", 3)]
    assert [s for s, *_ in transitions(rule, *steps)] == ["firing", "resolved"] * 2


def test_flapping_with_hysteresis_stays_firing_until_clear() -> None:
    rule = compile_rule('    clear: "< 30%"\n')
    steps = [("0.36", 0), ("0.34", 1), ("0.36", 2), ("0.31", 3), ("0.29", 4)]
    assert transitions(rule, *steps) == [
        ("firing", "warning", False, 0),
        ("resolved", "warning", False, 4),
    ]


def test_hysteresis_still_lets_critical_step_down_to_warning() -> None:
    rule = compile_rule('    clear: "< 30%"\n')
    steps = [("0.70", 0), ("0.40", 1), ("0.32", 2), ("0.10", 3)]
    assert [(s, sev) for s, sev, *_ in transitions(rule, *steps)] == [
        ("firing", "critical"),
        ("firing", "warning"),
        ("resolved", "warning"),
    ]


def test_repeat_renotifies_while_firing_in_event_time() -> None:
    rule = compile_rule("    repeat: 1h\n")
    steps = [("0.40", 0), ("0.40", 30), ("0.40", 60), ("0.40", 90), ("0.40", 125)]
    assert [m for *_, m in transitions(rule, *steps)] == [0, 60, 125]


def test_without_repeat_a_firing_alert_is_sent_once() -> None:
    rule = compile_rule("")
    assert len(transitions(rule, ("0.40", 0), ("0.40", 600), ("0.40", 6000))) == 1


def test_a_breach_inside_a_mute_calendar_is_recorded_muted() -> None:
    rule = compile_rule("    mute: promo\n")
    day2 = 24 * 60
    assert transitions(rule, ("0.40", day2 + 60)) == [("firing", "warning", True, day2 + 60)]


def test_the_end_of_a_mute_sends_the_firing_nobody_heard() -> None:
    rule = compile_rule("    mute: promo\n")
    day2 = 24 * 60
    steps = [("0.40", day2 + 60), ("0.40", day2 + 120), ("0.40", 2 * day2 + 5)]
    assert transitions(rule, *steps) == [
        ("firing", "warning", True, day2 + 60),
        ("firing", "warning", False, 2 * day2 + 5),
    ]


def test_a_mute_starting_while_firing_mutes_the_resolve_and_repeats() -> None:
    rule = compile_rule("    mute: promo\n    repeat: 1h\n")
    day2 = 24 * 60
    before = 600  # 20:00 on the day before the promotion
    steps = [("0.40", before), ("0.40", day2 + 120), ("0.10", day2 + 180)]
    assert transitions(rule, *steps) == [
        ("firing", "warning", False, before),
        ("resolved", "warning", True, day2 + 180),
    ]


def test_resolve_of_a_muted_firing_is_muted_even_after_the_mute() -> None:
    rule = compile_rule("    mute: promo\n")
    day2 = 24 * 60
    steps = [("0.40", day2 + 60), ("0.10", 2 * day2 + 5)]
    assert [m for *_, m, _ in transitions(rule, *steps)] == [True, True]


def test_resolve_carries_the_start_of_the_firing() -> None:
    rule = compile_rule("    for: 10m\n")
    states: dict[str, Any] = {}
    for value, minute in (("0.40", 0), ("0.40", 10), ("0.10", 30)):
        alert = advance(states, acos(rule, value, minute))
    assert alert is not None
    assert alert.status == "resolved"
    assert alert.started_at == T0 + timedelta(minutes=10)


def test_state_written_before_status_existed_still_resolves() -> None:
    rule = compile_rule("")
    states: dict[str, Any] = {}
    advance(states, acos(rule, "0.40"))
    (key,) = states
    states[key] = {"severity": "warning", "since": T0.isoformat(), "window_start": None}
    alert = advance(states, acos(rule, "0.10", 5))
    assert alert is not None
    assert (alert.status, alert.muted) == ("resolved", False)


def test_messages_render_in_both_languages() -> None:
    rule = compile_rule(
        "    message:\n"
        '      en: "{scope}: ACoS {value} ({threshold}) on {window}"\n'
        '      zh: "{scope} ACoS {value} 超过阈值 {threshold}"\n'
    )
    alert = advance({}, acos(rule, "0.40"))
    assert alert is not None
    assert alert.messages == {
        "en": "platform=amazon marketplace=US store=us-1 sku=A: ACoS 40.00% (> 35%) "
        "on 2026-11-23 (UTC)",
        "zh": "platform=amazon marketplace=US store=us-1 sku=A ACoS 40.00% 超过阈值 > 35%",
    }
