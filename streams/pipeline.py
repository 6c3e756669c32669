"""The one processing path both runtimes call: event -> KPI counters -> snapshots -> rules ->
alert transitions. Cross-store rollups come out as deltas: the embedded runtime applies them at
once, the Kafka runtime sends them through a topic keyed by the rollup scope first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.alerts import Alert
from rules.evaluate import evaluate_all
from rules.kpis import kpis_for
from rules.lifecycle import advance
from rules.load import RuleSet
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

    def process(self, event: Event) -> Output:
        """Raises InvalidEventError (LateEventError) for an event past retention."""
        update = apply_event(self.state, self.reference, event)
        return Output(self._evaluate(update.touches), update.rollups)

    def process_rollup(self, delta: dict[str, Any]) -> list[Alert]:
        return self._evaluate([apply_rollup(self.state, delta)])

    def process_inline(self, event: Event) -> list[Alert]:
        """Event and its rollups in one go: the embedded runtime's order of things."""
        output = self.process(event)
        for delta in output.rollups:
            output.alerts.extend(self.process_rollup(delta))
        return output.alerts

    def _evaluate(self, touches: list[Touch]) -> list[Alert]:
        alerts = []
        for touch in touches:
            level = touch.scope.level
            rules = self.rules.matching(kpis_for(touch.families, level), level)
            for window in dict.fromkeys(rule.window for rule in rules):
                view = snapshot(self.state, self.reference, touch, window)
                for evaluation in evaluate_all(self.rules, view):
                    alert = advance(self.state.alerts, evaluation)
                    if alert is not None:
                        alerts.append(alert)
        return alerts
