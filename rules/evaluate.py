"""Which KPI values break which thresholds: pure functions from a Snapshot to Evaluations."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rules.kpis import Snapshot
from rules.load import CompiledRule, RuleSet
from rules.schema import Severity, Threshold


@dataclass(frozen=True)
class Evaluation:
    """A rule judged against one snapshot.

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


def evaluate_all(rules: RuleSet, snapshot: Snapshot) -> list[Evaluation]:
    """Every rule that watches the snapshot's scope level and window, judged."""
    candidates = rules.matching(snapshot.values.keys(), snapshot.level)
    return [
        evaluate(rule, snapshot)
        for rule in candidates
        if rule.window == snapshot.window_name and _passes_filters(rule, snapshot)
    ]


def evaluate(rule: CompiledRule, snapshot: Snapshot) -> Evaluation:
    for guard in rule.guards:
        guard_value, _ = pick(snapshot, guard.kpi, guard.threshold.unit)
        if guard_value is None or not guard.threshold.holds(guard_value):
            return Evaluation(rule, snapshot, None, None, None, False, f"below the minimum {guard}")
    value, currency = pick(snapshot, rule.kpi.name, _money_unit(rule))
    if value is None:
        return Evaluation(
            rule, snapshot, None, None, None, False, f"{rule.kpi.name} is undefined", currency
        )
    for severity, threshold in rule.thresholds:
        if threshold.holds(value):
            return Evaluation(rule, snapshot, severity, value, threshold, currency=currency)
    return Evaluation(rule, snapshot, None, value, None, currency=currency)


def pick(snapshot: Snapshot, kpi: str, unit: str | None) -> tuple[Decimal | None, str | None]:
    """A KPI's value in the currency a threshold is written in: the reporting currency, or the
    scope's selling currency. A threshold in any other currency says nothing about this scope."""
    if unit in (None, "%") or unit == snapshot.currency:
        return snapshot.values.get(kpi), snapshot.currency
    if unit == snapshot.native_currency:
        return snapshot.native.get(kpi), unit
    return None, None


def _money_unit(rule: CompiledRule) -> str | None:
    return next((t.unit for _, t in rule.thresholds if t.unit not in (None, "%")), None)


def _passes_filters(rule: CompiledRule, snapshot: Snapshot) -> bool:
    return all(snapshot.labels.get(label) in allowed for label, allowed in rule.filters)
