"""Alerts as text on a stream: one JSON line each, or one human-readable line each."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

import httpx

from rules.alerts import Alert
from sinks.config import ConsoleConfig


def alert_json(alert: Alert) -> str:
    """The alert as one JSON line (the format `kpiwatch replay` prints)."""
    return alert.model_dump_json()


def alert_text(alert: Alert) -> str:
    return f"{alert.at.isoformat()}  {alert.summary}"


class ConsoleSink:
    """Writes alerts to a text stream (stdout unless told otherwise)."""

    def __init__(
        self, name: str = "console", *, stream: TextIO | None = None, json_lines: bool = True
    ) -> None:
        self.name = name
        self._stream = stream
        self._format = alert_json if json_lines else alert_text

    @classmethod
    def from_config(cls, config: ConsoleConfig, client: httpx.AsyncClient) -> ConsoleSink:
        return cls(config.name, json_lines=config.json_lines)

    async def send(self, alerts: Sequence[Alert]) -> None:
        stream = self._stream or sys.stdout
        for alert in alerts:
            stream.write(self._format(alert) + "\n")
        stream.flush()
