"""A sink that keeps what it receives, for tests and for anyone embedding kpiwatch."""

from __future__ import annotations

from collections.abc import Sequence

from rules.alerts import Alert


class MemorySink:
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.alerts: list[Alert] = []

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)
