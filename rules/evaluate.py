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


def evaluate_all(rules: RuleSet, snapshot: Snapshot) -> list[Evaluation]:
    """Every rule that applies to the snapshot's scope, judged."""
    candidates = rules.matching(snapshot.values.keys(), snapshot.level)
    return [evaluate(rule, snapshot) for rule in candidates if _passes_filters(rule, snapshot)]


def evaluate(rule: CompiledRule, snapshot: Snapshot) -> Evaluation:
    value = snapshot.values.get(rule.kpi.name)
    for guard in rule.guards:
        guard_value = snapshot.values.get(guard.kpi)
        if not _holds(guard.threshold, guard_value, snapshot.currency):
            return Evaluation(
                rule, snapshot, None, value, None, False, f"below the minimum {guard}"
            )
    if value is None:
        return Evaluation(rule, snapshot, None, None, None, False, f"{rule.kpi.name} is undefined")
    if any(_other_currency(t, snapshot.currency) for _, t in rule.thresholds):
        return Evaluation(
            rule, snapshot, None, value, None, False, f"thresholds are not in {snapshot.currency}"
        )
    for severity, threshold in rule.thresholds:
        if threshold.holds(value):
            return Evaluation(rule, snapshot, severity, value, threshold)
    return Evaluation(rule, snapshot, None, value, None)


def _holds(threshold: Threshold, value: Decimal | None, currency: str | None) -> bool:
    return value is not None and not _other_currency(threshold, currency) and threshold.holds(value)


def _other_currency(threshold: Threshold, currency: str | None) -> bool:
    # A money threshold in one currency says nothing about a scope that sells in another;
    # such scopes are not judged until reporting-currency conversion exists.
    return threshold.unit not in (None, "%") and threshold.unit != currency


def _passes_filters(rule: CompiledRule, snapshot: Snapshot) -> bool:
    return all(snapshot.labels.get(label) in allowed for label, allowed in rule.filters)
