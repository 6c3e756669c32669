"""The embedded runtime: the same pipeline as the worker, driven in-process, no Kafka or Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rules.alerts import Alert
from rules.errors import InvalidEventError
from rules.load import RuleSet
from streams.events import RawRecord
from streams.kpi import State
from streams.pipeline import Pipeline


@dataclass
class ReplayReport:
    events: int = 0
    alerts: int = 0
    rejected: list[InvalidEventError] = field(default_factory=list)


def replay(
    records: Iterable[RawRecord],
    rules: RuleSet,
    on_alert: Callable[[Alert], None],
    on_reject: Callable[[InvalidEventError], None] = lambda _: None,
    state: State | None = None,
) -> ReplayReport:
    """Decode, aggregate and evaluate every record in order; bad records are reported, not fatal."""
    pipeline = Pipeline(state or State(), rules)
    report = ReplayReport()
    for record in records:
        try:
            event = record.decode()
        except InvalidEventError as exc:
            report.rejected.append(exc)
            on_reject(exc)
            continue
        report.events += 1
        for alert in pipeline.process(event):
            report.alerts += 1
            on_alert(alert)
    return report
