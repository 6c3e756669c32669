"""The one processing path both runtimes call: event -> KPI counters -> snapshots -> rules ->
alert transitions. Cross-store rollups come out as deltas: the embedded runtime applies them at
once, the Kafka runtime sends them through a topic keyed by the rollup scope first."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.alerts import Alert
from rules.evaluate import Evaluation, evaluate_rules
from rules.kpis import kpis_for
from rules.lifecycle import advance
from rules.load import CompiledRule, RuleSet
from streams import nodata
from streams.events import Event
from streams.kpi import State, Touch, apply_event, apply_rollup
from streams.reference import Reference
from streams.values import snapshot


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    rollups: list[dict[str, Any]] = field(default_factory=list)


class Pipeline:
    """Holds the state mappings, reference data and the current rules (`rules` may be swapped
    on reload)."""

    def __init__(self, state: State, rules: RuleSet, reference: Reference | None = None) -> None:
        self.state = state
        self.rules = rules
        self.reference = reference or Reference()
        # Per partition, the newest event time and the minute of the last no-data check. Not
        # persisted: after a restart the next event checks again, and the lifecycle drops what
        # it already knows.
        self._newest: dict[int, datetime] = {}
        self._checked: dict[int, datetime] = {}
        # Told every judged value: the Kafka runtime feeds its Prometheus KPI gauges from it.
        self.observe: Callable[[Evaluation], None] | None = None

    def process(self, event: Event, partition: int = 0) -> Output:
        """Raises InvalidEventError (LateEventError) for an event past retention. `partition`
        is the Kafka partition of the event (state of other partitions is never touched)."""
        update = apply_event(self.state, self.reference, event, partition)
        alerts = self._evaluate(update.touches)
        alerts.extend(self.check_silence(event.occurred_at, partition))
        return Output(alerts, update.rollups)

    def process_rollup(self, delta: dict[str, Any], partition: int = 0) -> list[Alert]:
        return self._evaluate([apply_rollup(self.state, delta, partition)])

    def process_inline(self, event: Event) -> list[Alert]:
        """Event and its rollups in one go: the embedded runtime's order of things."""
        output = self.process(event)
        for delta in output.rollups:
            output.alerts.extend(self.process_rollup(delta))
        return output.alerts

    def check_silence(
        self, at: datetime, partition: int = 0, *, force: bool = False
    ) -> list[Alert]:
        """Judge the no_data rules for the stores of `partition` once per minute of its event
        time (and when forced, at the end of a replay); event time only moves forward here."""
        newest = max(at, self._newest.get(partition, at))
        self._newest[partition] = newest
        minute = newest.replace(second=0, microsecond=0)
        if not self.rules.silent or (not force and self._checked.get(partition) == minute):
            return []
        self._checked[partition] = minute
        silent = self.rules.silent
        return self._advance(nodata.check(self.state, self.reference, silent, newest, partition))

    @property
    def newest(self) -> datetime | None:
        """The newest event time seen on any partition."""
        return max(self._newest.values(), default=None)

    def _evaluate(self, touches: list[Touch]) -> list[Alert]:
        alerts = []
        for touch in touches:
            level, labels = touch.scope.level, touch.scope.labels
            rules = self.rules.matching(kpis_for(touch.families, level), level, labels)
            for window, group in _by_window(rules).items():
                baselines = {r.baseline.key: r.baseline for r in group if r.baseline}
                view = snapshot(self.state, self.reference, touch, window, baselines.values())
                alerts.extend(self._advance(evaluate_rules(group, view)))
        return alerts

    def _advance(self, evaluations: Iterable[Evaluation]) -> list[Alert]:
        alerts = []
        for evaluation in evaluations:
            if self.observe is not None:
                self.observe(evaluation)
            alert = advance(self.state.alerts, evaluation)
            if alert is not None:
                alerts.append(alert)
        return alerts


def _by_window(rules: list[CompiledRule]) -> dict[str | None, list[CompiledRule]]:
    """Rules grouped by window, in order: one snapshot serves each group."""
    groups: dict[str | None, list[CompiledRule]] = {}
    for rule in rules:
        groups.setdefault(rule.window, []).append(rule)
    return groups
