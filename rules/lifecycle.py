"""The alert lifecycle per fingerprint: inactive -> firing -> resolved, one notification each.

State is a small JSON-able dict so that it can live in a Faust table (Kafka runtime) or a plain
dict (embedded runtime); both call `advance` and nothing else.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from rules.alerts import Alert, fingerprint, format_value
from rules.evaluate import Evaluation
from rules.schema import Severity

AlertStates = MutableMapping[str, Any]


def advance(states: AlertStates, evaluation: Evaluation) -> Alert | None:
    """Apply one evaluation to the stored state; return the alert to send, if any.

    A breach that is already firing at the same severity sends nothing (no duplicates); a
    change of severity is a new notification; a firing scope no longer breached resolves.
    An evaluation of an older window than the one that fired is stale and changes nothing, and
    so does a scope that could not be judged (too little volume, an undefined value).
    """
    if not evaluation.judged:
        return None
    snapshot = evaluation.snapshot
    labels = alert_labels(evaluation)
    key = fingerprint(evaluation.rule.name, labels)
    previous = states.get(key)
    window_start = snapshot.window.start.isoformat() if snapshot.window else None
    if previous is not None and _is_stale(
        previous, snapshot.window.start if snapshot.window else None
    ):
        return None
    firing = previous is not None and previous["severity"] is not None
    if evaluation.severity is None:
        if previous is None or not firing:
            return None
        # Keep the newest window seen, so a late event of an older window cannot re-fire.
        states[key] = {
            "severity": None,
            "since": snapshot.at.isoformat(),
            "window_start": window_start,
        }
        return _alert(evaluation, labels, key, previous["severity"], "resolved")
    if firing and previous is not None and previous["severity"] == evaluation.severity:
        return None
    states[key] = {
        "severity": evaluation.severity,
        "since": snapshot.at.isoformat(),
        "window_start": window_start,
    }
    return _alert(evaluation, labels, key, evaluation.severity, "firing")


def alert_labels(evaluation: Evaluation) -> dict[str, str]:
    """Scope labels plus the rule's own routing labels (scope wins on a clash)."""
    return {**dict(evaluation.rule.labels), **dict(evaluation.snapshot.labels)}


def _is_stale(previous: dict[str, Any], window_start: datetime | None) -> bool:
    seen = previous.get("window_start")
    if seen is None or window_start is None:
        return False
    return window_start < datetime.fromisoformat(seen)


def _alert(
    evaluation: Evaluation, labels: dict[str, str], key: str, severity: Severity, status: str
) -> Alert:
    rule, snapshot = evaluation.rule, evaluation.snapshot
    threshold = evaluation.threshold or dict(rule.thresholds)[severity]
    return Alert.model_validate(
        {
            "rule": rule.name,
            "severity": severity,
            "status": status,
            "labels": labels,
            "value": evaluation.value,
            "threshold": str(threshold),
            "window_start": snapshot.window.start if snapshot.window else None,
            "window_end": snapshot.window.end if snapshot.window else None,
            "at": snapshot.at,
            "kpi": rule.kpi.name,
            "fingerprint": key,
            "summary": _summary(evaluation, labels, severity, status, str(threshold)),
        }
    )


def _summary(
    evaluation: Evaluation, labels: dict[str, str], severity: str, status: str, threshold: str
) -> str:
    rule, snapshot = evaluation.rule, evaluation.snapshot
    value = format_value(evaluation.value, rule.kpi.unit, evaluation.currency)
    scope = " ".join(
        f"{k}={labels[k]}" for k in ("platform", "marketplace", "store", "sku") if k in labels
    )
    window = f" on {snapshot.window.label} ({snapshot.zone})" if snapshot.window else ""
    if status == "resolved":
        return f"RESOLVED {rule.name}: {rule.kpi.name} is {value} now; {scope}{window}"
    return f"[{severity.upper()}] {rule.name}: {rule.kpi.name} {value} {threshold}; {scope}{window}"
