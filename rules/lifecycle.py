"""The alert lifecycle per fingerprint: inactive -> pending -> firing -> resolved.

State is a small JSON-able dict so that it can live in a Faust table (Kafka runtime) or a plain
dict (embedded runtime); both call `advance` and nothing else. Every time in it is event time
(the snapshot's `at`), never the wall clock, so that a replay and the worker agree on when a
breach has held long enough (`for:`) and when to re-notify (`repeat:`).

    {"status": "pending" | "firing" | "resolved" | "inactive", "severity": ..., "since": ...,
     "notified": ..., "sent": bool, "window_start": ...}
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.alerts import Alert, fingerprint, format_value
from rules.evaluate import Evaluation
from rules.messages import render
from rules.schema import Severity

AlertStates = MutableMapping[str, Any]


@dataclass(frozen=True)
class _Step:
    """One evaluation in the light of the stored state."""

    evaluation: Evaluation
    key: str
    labels: dict[str, str]
    previous: dict[str, Any] | None
    muted: bool

    @property
    def at(self) -> datetime:
        return self.evaluation.snapshot.at

    @property
    def status(self) -> str:
        return self.previous["status"] if self.previous else "inactive"


Identity = tuple[dict[str, str], str]  # an alert's labels and fingerprint


def identity(evaluation: Evaluation) -> Identity:
    """The labels and fingerprint of the alert an evaluation is about."""
    labels = alert_labels(evaluation)
    return labels, fingerprint(evaluation.rule.name, labels)


def advance(
    states: AlertStates, evaluation: Evaluation, known: Identity | None = None
) -> Alert | None:
    """Apply one evaluation to the stored state; return the transition to record, if any.

    A breach waits `for:` (pending) before it fires; a firing alert sends nothing more at the
    same severity until `repeat:` has passed; a change of severity is a new notification; a
    firing scope resolves once no threshold holds, or with `clear:` once the clear threshold
    holds. Inside a mute calendar a transition is returned with `muted` set (recorded, not
    sent), and a firing nobody was told about is sent when the mute ends. An evaluation of an
    older window than the stored one is stale, and an unjudged one (too little volume, an
    undefined value) changes nothing. `known` is the evaluation's `identity`, when the caller
    keeps it (it is the same for a rule and a scope every time).
    """
    if not evaluation.judged:
        return None
    labels, key = known if known is not None else identity(evaluation)
    stored = states.get(key)
    if stored is None and evaluation.severity is None:
        return None  # calm, and never anything else: nothing to record
    previous = _load(stored)
    window = evaluation.snapshot.window
    if previous is not None and _is_stale(previous, window.start if window else None):
        return None
    step = _Step(evaluation, key, labels, previous, _is_muted(evaluation))
    severity = _held_severity(step)
    if severity is None:
        return _calm(states, step)
    return _breach(states, step, severity)


def alert_labels(evaluation: Evaluation) -> dict[str, str]:
    """Scope labels plus the rule's own routing labels (scope wins on a clash)."""
    return {**dict(evaluation.rule.labels), **dict(evaluation.snapshot.labels)}


def _load(record: Any) -> dict[str, Any] | None:
    """The stored state; records written before `status` existed were firing or resolved."""
    if record is None or "status" in record:
        return None if record is None else dict(record)
    firing = record.get("severity") is not None
    return {
        **record,
        "status": "firing" if firing else "resolved",
        "notified": record.get("since"),
        "sent": True,
    }


def _is_muted(evaluation: Evaluation) -> bool:
    snapshot = evaluation.snapshot
    return any(c.active(snapshot.at, snapshot.zone) for c in evaluation.rule.mute)


def _held_severity(step: _Step) -> Severity | None:
    """The breach severity, or with hysteresis the firing one until the clear threshold holds."""
    evaluation, previous = step.evaluation, step.previous
    if evaluation.severity is not None or previous is None or step.status != "firing":
        return evaluation.severity
    clear, value = evaluation.rule.clear, evaluation.value
    if clear is None or value is None or clear.holds(value):
        return None
    held: Severity = previous["severity"]
    return held


def _calm(states: AlertStates, step: _Step) -> Alert | None:
    if step.status == "pending":
        states[step.key] = _record(step, "inactive", None, sent=False)
        return None
    if step.status != "firing" or step.previous is None:
        return None
    severity: Severity = step.previous["severity"]
    states[step.key] = _record(step, "resolved", None, sent=False)
    # Nobody heard of a firing that stayed muted; its resolve would be noise.
    muted = step.muted or not step.previous["sent"]
    return _alert(step, severity, "resolved", muted, step.previous["since"])


def _breach(states: AlertStates, step: _Step, severity: Severity) -> Alert | None:
    rule, previous = step.evaluation.rule, step.previous
    if step.status == "firing" and previous is not None:
        return _while_firing(states, step, severity, previous)
    since = previous["since"] if step.status == "pending" and previous else step.at.isoformat()
    waited = step.at - datetime.fromisoformat(since)
    if rule.for_ and waited < rule.for_:
        states[step.key] = _record(step, "pending", severity, since=since, sent=False)
        return None
    return _fire(states, step, severity, step.at.isoformat(), sent=False)


def _while_firing(
    states: AlertStates, step: _Step, severity: Severity, previous: dict[str, Any]
) -> Alert | None:
    repeat = step.evaluation.rule.repeat
    notified = previous.get("notified")
    due = (
        repeat is not None
        and notified is not None
        and step.at - datetime.fromisoformat(notified) >= repeat
    )
    changed = severity != previous["severity"]
    unheard = not previous["sent"] and not step.muted  # the mute ended while firing
    if changed or unheard or (due and not step.muted):
        return _fire(states, step, severity, previous["since"], sent=previous["sent"])
    if step.evaluation.snapshot.window is not None:  # remember the newest window seen
        states[step.key] = {**previous, "window_start": _window_start(step)}
    return None


def _fire(states: AlertStates, step: _Step, severity: Severity, since: str, *, sent: bool) -> Alert:
    notified = step.previous.get("notified") if step.muted and step.previous else None
    states[step.key] = _record(
        step,
        "firing",
        severity,
        since=since,
        notified=notified if step.muted else step.at.isoformat(),
        sent=sent or not step.muted,
    )
    return _alert(step, severity, "firing", step.muted, since)


def _record(
    step: _Step,
    status: str,
    severity: Severity | None,
    *,
    since: str | None = None,
    notified: str | None = None,
    sent: bool,
) -> dict[str, Any]:
    return {
        "status": status,
        "severity": severity,
        "since": since or step.at.isoformat(),
        "notified": notified,
        "sent": sent,
        "window_start": _window_start(step),
    }


def _window_start(step: _Step) -> str | None:
    window = step.evaluation.snapshot.window
    return window.start.isoformat() if window else None


def _is_stale(previous: dict[str, Any], window_start: datetime | None) -> bool:
    seen = previous.get("window_start")
    if seen is None or window_start is None:
        return False
    return window_start < datetime.fromisoformat(seen)


def _alert(step: _Step, severity: Severity, status: str, muted: bool, since: str) -> Alert:
    evaluation = step.evaluation
    rule, snapshot = evaluation.rule, evaluation.snapshot
    threshold = str(evaluation.threshold or dict(rule.thresholds)[severity])
    return Alert.model_validate(
        {
            "rule": rule.name,
            "severity": severity,
            "status": status,
            "labels": step.labels,
            "value": evaluation.value,
            "threshold": threshold,
            "window_start": snapshot.window.start if snapshot.window else None,
            "window_end": snapshot.window.end if snapshot.window else None,
            "at": snapshot.at,
            "kpi": rule.kpi.name,
            "fingerprint": step.key,
            "summary": _summary(evaluation, step.labels, severity, status, threshold),
            "muted": muted,
            "started_at": since,
            "messages": _messages(evaluation, step.labels, severity, status, threshold),
            "zone": snapshot.zone,
            **_money(evaluation),
        }
    )


def _money(evaluation: Evaluation) -> dict[str, Any]:
    """A money KPI in the selling and the reporting currency, for people to read both."""
    rule, snapshot = evaluation.rule, evaluation.snapshot
    if rule.kpi.unit != "money" or rule.baseline:
        return {}
    name = rule.kpi.name
    pairs = {
        "selling": (snapshot.native.get(name), snapshot.native_currency),
        "reporting": (snapshot.values.get(name), snapshot.currency),
    }
    return {
        key: {"amount": amount, "currency": currency}
        for key, (amount, currency) in pairs.items()
        if amount is not None and currency is not None
    }


def _placeholders(
    evaluation: Evaluation, labels: dict[str, str], severity: str, status: str, threshold: str
) -> dict[str, str]:
    rule, snapshot = evaluation.rule, evaluation.snapshot
    unit = "ratio" if rule.baseline else rule.kpi.unit  # a baseline rule judges value / usual
    return {
        "rule": rule.name,
        "kpi": rule.kpi.name,
        "severity": severity,
        "status": status,
        "value": format_value(evaluation.value, unit, evaluation.currency),
        "threshold": threshold,
        "baseline": format_value(evaluation.baseline, rule.kpi.unit, evaluation.currency),
        "scope": " ".join(f"{k}={labels[k]}" for k in _scope_keys(labels) if k in labels),
        "window": f"{snapshot.window.label} ({snapshot.zone})" if snapshot.window else "",
    }


def _scope_keys(labels: dict[str, str]) -> tuple[str, ...]:
    """The labels that name a scope; a team's own scope (a scorecard, a team rollup) has only
    its team, which store scopes carry for routing only."""
    if "platform" not in labels and "team" in labels:
        return ("team",)
    return ("platform", "marketplace", "store", "sku")


def _messages(
    evaluation: Evaluation, labels: dict[str, str], severity: str, status: str, threshold: str
) -> dict[str, str]:
    values = _placeholders(evaluation, labels, severity, status, threshold)
    return {language: render(text, values) for language, text in evaluation.rule.messages}


def _summary(
    evaluation: Evaluation, labels: dict[str, str], severity: str, status: str, threshold: str
) -> str:
    values = _placeholders(evaluation, labels, severity, status, threshold)
    rule, value, scope = evaluation.rule, values["value"], values["scope"]
    window = f" on {values['window']}" if values["window"] else ""
    if status == "resolved":
        return f"RESOLVED {rule.name}: {rule.kpi.name} is {value} now; {scope}{window}"
    return f"[{severity.upper()}] {rule.name}: {rule.kpi.name} {value} {threshold}; {scope}{window}"
