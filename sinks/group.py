"""Grouping alert transitions into digests, Alertmanager-style, with an injected clock.

A group (route + values of its `group_by` labels) first flushes `group_wait` after its first
alert, so a stockout wave across 40 SKUs arrives as one message; after that it flushes at most
every `group_interval`, and only when something new (firing or resolved) arrived. A group
with nothing new once its interval has passed is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rules.alerts import Alert
from sinks.route import Route

Clock = Callable[[], float]


@dataclass(frozen=True)
class Batch:
    """One digest for the sinks of one route, alerts in arrival order."""

    route: Route
    key: str
    alerts: tuple[Alert, ...]


@dataclass
class _Group:
    route: Route
    key: str
    flush_at: float
    pending: dict[str, Alert] = field(default_factory=dict)


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    values = ",".join(f"{name}={labels.get(name, '')}" for name in route.group_by)
    return f"{route.id}|{values}"


class Grouper:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._groups: dict[str, _Group] = {}

    def add(self, route: Route, alert: Alert, labels: Mapping[str, str]) -> str:
        """Queue the transition in its group; returns the group key."""
        key = group_key(route, labels)
        group = self._groups.get(key)
        if group is None:
            group = _Group(route, key, self._clock() + route.group_wait)
            self._groups[key] = group
        # A transition read twice (at-least-once redelivery) is one item of the digest.
        group.pending.setdefault(alert.key, alert)
        return key

    def due(self) -> list[Batch]:
        """The digests whose time has come; their groups wait `group_interval` for the next."""
        now = self._clock()
        batches = []
        for key, group in list(self._groups.items()):
            if group.flush_at > now:
                continue
            if not group.pending:
                del self._groups[key]
                continue
            batches.append(Batch(group.route, key, tuple(group.pending.values())))
            group.pending = {}
            group.flush_at = now + group.route.group_interval
        return batches

    def next_due(self) -> float | None:
        """When `due` next has something to give (None: nothing is pending)."""
        times = [g.flush_at for g in self._groups.values() if g.pending]
        return min(times) if times else None

    def flush_all(self) -> list[Batch]:
        """Everything pending now, ignoring the timers (shutdown)."""
        batches = [
            Batch(g.route, k, tuple(g.pending.values()))
            for k, g in self._groups.items()
            if g.pending
        ]
        self._groups.clear()
        return batches
