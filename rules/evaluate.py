"""Which KPI values break which thresholds: pure functions from a Snapshot to Evaluations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from rules.kpis import Snapshot, ratio
from rules.load import CompiledRule, RuleSet
from rules.schema import Severity, Threshold
from rules.scorecard import score


@dataclass(slots=True)
class Evaluation:
    """A rule judged against one snapshot (not frozen, for speed; never changed).

    `severity` None with `judged` True means "not breached". `judged` False means the scope could
    not be judged (too little volume for the guard, or an undefined value): that changes nothing.
    """

    rule: CompiledRule
    snapshot: Snapshot
    severity: Severity | None
    value: Decimal | None
    threshold: Threshold | None
    judged: bool = True
    reason: str = ""
    currency: str | None = None
    baseline: Decimal | None = None


def evaluate_all(rules: RuleSet, snapshot: Snapshot) -> list[Evaluation]:
    """Every rule that watches the snapshot's scope level and window, judged."""
    return evaluate_rules(
        rules.matching(snapshot.values.keys(), snapshot.level, snapshot.labels), snapshot
    )


def evaluate_rules(candidates: Iterable[CompiledRule], snapshot: Snapshot) -> list[Evaluation]:
    """Those of `candidates` that watch the snapshot's window and admit its scope, judged."""
    return [
        evaluate(rule, snapshot)
        for rule in candidates
        if rule.window == snapshot.window_name and passes_filters(rule, snapshot)
    ]


def evaluate(rule: CompiledRule, snapshot: Snapshot) -> Evaluation:
    if rule.scorecard is not None:
        return _against_scorecard(rule, snapshot)
    for guard in rule.guards:
        guard_value, _ = pick(snapshot, guard.kpi, guard.threshold.unit)
        if guard_value is None or not guard.threshold.holds(guard_value):
            return Evaluation(rule, snapshot, None, None, None, False, f"below the minimum {guard}")
    value, currency = pick(snapshot, rule.kpi.name, rule.money_unit)
    if value is None:
        return Evaluation(
            rule, snapshot, None, None, None, False, f"{rule.kpi.name} is undefined", currency
        )
    if rule.baseline is not None:
        return _against_baseline(rule, snapshot, value, currency)
    return _judge(rule, snapshot, value, currency)


def _judge(
    rule: CompiledRule,
    snapshot: Snapshot,
    value: Decimal,
    currency: str | None,
    baseline: Decimal | None = None,
) -> Evaluation:
    for severity, threshold in rule.thresholds:
        if threshold.holds(value):
            return Evaluation(
                rule, snapshot, severity, value, threshold, currency=currency, baseline=baseline
            )
    return Evaluation(rule, snapshot, None, value, None, currency=currency, baseline=baseline)


def _against_baseline(
    rule: CompiledRule, snapshot: Snapshot, value: Decimal, currency: str | None
) -> Evaluation:
    """The value as a share of the usual one; a scope with no usual value cannot be judged."""
    key = rule.baseline.key if rule.baseline else ""
    usual = snapshot.baselines.get(key, {}).get(rule.kpi.name)
    share = ratio(value, usual) if usual is not None else None
    if share is None:
        reason = f"no usual {rule.kpi.name} to compare with ({key})"
        return Evaluation(rule, snapshot, None, None, None, False, reason, currency)
    return _judge(rule, snapshot, share, currency, usual)


def _against_scorecard(rule: CompiledRule, snapshot: Snapshot) -> Evaluation:
    """The team's score over the period against its own card's bands."""
    team = snapshot.labels.get("team", "")
    card = rule.cards.get(team)
    check = rule.scorecard
    if card is None or check is None:
        return Evaluation(rule, snapshot, None, None, None, False, f"no scorecard for {team!r}")
    result = score(card, check.period, snapshot.values)
    if result.score is None:
        reason = f"no KPI of {team!r}'s scorecard has a value"
        return Evaluation(rule, snapshot, None, None, None, False, reason)
    below = {"yellow": card.bands.green, "red": card.bands.yellow}
    bands: tuple[tuple[Severity, str | None], ...] = (
        ("critical", check.critical),
        ("warning", check.warning),
    )
    for severity, band in bands:
        if band is None:
            continue
        threshold = Threshold("<", below[band], None, f"< {below[band]} ({band} or worse)")
        if threshold.holds(result.score):
            return Evaluation(rule, snapshot, severity, result.score, threshold)
    return Evaluation(rule, snapshot, None, result.score, None)


def pick(snapshot: Snapshot, kpi: str, unit: str | None) -> tuple[Decimal | None, str | None]:
    """A KPI's value in the currency a threshold is written in: the reporting currency, or the
    scope's selling currency. A threshold in any other currency says nothing about this scope."""
    if unit in (None, "%", "d") or unit == snapshot.currency:
        return snapshot.values.get(kpi), snapshot.currency
    if unit == snapshot.native_currency:
        return snapshot.native.get(kpi), unit
    return None, None


def passes_filters(rule: CompiledRule, snapshot: Snapshot) -> bool:
    return all(snapshot.labels.get(label) in allowed for label, allowed in rule.filters)
