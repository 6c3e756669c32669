"""The one processing path both runtimes call: event -> KPI snapshots -> evaluations -> alerts."""

from __future__ import annotations

from rules.alerts import Alert
from rules.evaluate import evaluate_all
from rules.lifecycle import advance
from rules.load import RuleSet
from streams.events import Event
from streams.kpi import State, apply_event


class Pipeline:
    """Holds the state mappings and the current rules; `rules` may be swapped on reload."""

    def __init__(self, state: State, rules: RuleSet) -> None:
        self.state = state
        self.rules = rules

    def process(self, event: Event) -> list[Alert]:
        alerts = []
        for snapshot in apply_event(self.state, event):
            for evaluation in evaluate_all(self.rules, snapshot):
                alert = advance(self.state.alerts, evaluation)
                if alert is not None:
                    alerts.append(alert)
        return alerts
