"""The embedded runtime: the same pipeline as the worker, driven in-process, no Kafka or Redis.

Valid events are grouped into messages exactly as `kpiwatch produce` groups them for Kafka
(`streams.events.pack`) and fed in batches: one partition of stores, one of rollups, both kept
in plain dicts (`State`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from rules.alerts import Alert
from rules.errors import InvalidEventError
from rules.evaluate import Evaluation
from rules.load import RuleSet
from streams.events import Event, RawRecord, pack
from streams.heap import Heap
from streams.pipeline import Message, Pipeline
from streams.query import StateReader
from streams.reference import Reference
from streams.rollup import RollupPipeline
from streams.state import StateStore

# Messages per batch: what a worker reads at once from a busy partition.
BATCH_MESSAGES = 1000


@dataclass
class State:
    """What the engine remembers, as the worker's two tables hold it: store partitions in
    `stores`, cross-store scopes in `rollups` (keys to JSON bytes)."""

    stores: dict[str, bytes] = field(default_factory=dict)
    rollups: dict[str, bytes] = field(default_factory=dict)


@dataclass
class ReplayReport:
    events: int = 0
    alerts: int = 0
    later: int = 0  # valid events left out because they occurred after `until`
    rejected: list[InvalidEventError] = field(default_factory=list)


class Engine:
    """Both sides of the engine in one process: a store partition and a rollup partition."""

    def __init__(
        self, rules: RuleSet, reference: Reference | None = None, state: State | None = None
    ) -> None:
        self.state = state if state is not None else State()
        self.reference = reference or Reference()
        self.pipeline = Pipeline(StateStore(self.state.stores), rules, self.reference)
        self.rollups = RollupPipeline(
            StateStore(self.state.rollups), rules, self.reference, idle_after=math.inf
        )

    @property
    def rules(self) -> RuleSet:
        return self.pipeline.rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self.pipeline.rules = rules
        self.rollups.rules = rules

    def observe(self, callback: Callable[[Evaluation], None]) -> None:
        self.pipeline.judge.observe = callback
        self.rollups.judge.observe = callback

    def process(self, messages: Iterable[Message]) -> tuple[list[Alert], list[InvalidEventError]]:
        """One batch through both sides; its state is committed."""
        output = self.pipeline.process(messages)
        self.pipeline.store.commit()
        alerts = output.alerts
        alerts.extend(self.rollups.process(output.rollups).alerts)
        self.rollups.store.commit()
        return alerts, output.rejected

    def process_events(self, events: Iterable[Event]) -> list[Alert]:
        """Events one message each (tests and the simplest callers)."""
        alerts, rejected = self.process(Message([event]) for event in events)
        if rejected:
            raise rejected[0]
        return alerts


def replay(
    records: Iterable[RawRecord],
    rules: RuleSet,
    on_alert: Callable[[Alert], None],
    on_reject: Callable[[InvalidEventError], None] = lambda _: None,
    state: State | None = None,
    reference: Reference | None = None,
    *,
    engine: Engine | None = None,
    until: datetime | None = None,
) -> ReplayReport:
    """Decode every record, group the valid events as `kpiwatch produce` would, aggregate and
    evaluate them in order; bad records (and events past retention) are reported, not fatal.
    With `until`, events that occurred after it are left out (what was known at `until`)."""
    engine = engine or Engine(rules, reference, state)
    report = ReplayReport()

    def valid() -> Iterator[Event]:
        for record in records:
            try:
                event = record.decode()
            except InvalidEventError as exc:
                _reject(report, exc, on_reject)
                continue
            if until is not None and event.occurred_at > until:
                report.later += 1
                continue
            sources[event_key(event)] = record.source
            yield event

    sources: dict[tuple[str, str], str] = {}
    messages = (_message(group, sources) for group in pack(valid()))
    heap = Heap()
    while batch := list(itertools.islice(messages, BATCH_MESSAGES)):
        alerts, rejected = engine.process(batch)
        heap.after_batch()
        report.events += sum(len(m.events) for m in batch) - len(rejected)
        for exc in rejected:
            _reject(report, exc, on_reject)
        for alert in alerts:
            report.alerts += 1
            on_alert(alert)
    return report


def event_key(event: Event) -> tuple[str, str]:
    return (event.store_id, event.event_id)


def _message(group: list[Event], sources: dict[tuple[str, str], str]) -> Message:
    found = [sources.pop(event_key(e), "") for e in group]
    return Message(group, found[0], found)


def _reject(
    report: ReplayReport, exc: InvalidEventError, on_reject: Callable[[InvalidEventError], None]
) -> None:
    report.rejected.append(exc)
    on_reject(exc)


def reader(state: State, reference: Reference | None = None) -> StateReader:
    """Queries over an embedded state (`kpiwatch kpis`, tests)."""
    return StateReader(
        StateStore(state.stores), StateStore(state.rollups), reference or Reference()
    )
