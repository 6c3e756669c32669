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
from streams.reference import Reference


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
    reference: Reference | None = None,
) -> ReplayReport:
    """Decode, aggregate and evaluate every record in order; bad records (and events past
    retention) are reported, not fatal."""
    pipeline = Pipeline(state if state is not None else State(), rules, reference)
    report = ReplayReport()
    for record in records:
        try:
            alerts = pipeline.process_inline(record.decode())
        except InvalidEventError as exc:
            report.rejected.append(_at(record, exc))
            on_reject(report.rejected[-1])
            continue
        report.events += 1
        _emit(report, alerts, on_alert)
    # Silence after the last event is judged at the newest event time, as the worker would.
    if pipeline.newest is not None:
        _emit(report, pipeline.check_silence(pipeline.newest, force=True), on_alert)
    return report


def _emit(report: ReplayReport, alerts: list[Alert], on_alert: Callable[[Alert], None]) -> None:
    for alert in alerts:
        report.alerts += 1
        on_alert(alert)


def _at(record: RawRecord, exc: InvalidEventError) -> InvalidEventError:
    """The error with the record's own position (a late event knows only its ids)."""
    if exc.source == record.source:
        return exc
    return type(exc)(record.source, exc.reason)
