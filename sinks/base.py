"""The sink protocol: deliver a batch of alerts, or say whether trying again could help."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rules.alerts import Alert
from rules.errors import KpiwatchError


class SinkError(KpiwatchError):
    """A delivery failed. `retryable` is False when the receiver refused the alert itself (4xx)."""

    def __init__(
        self, sink: str, message: str, *, retryable: bool, retry_after: float | None = None
    ):
        self.sink = sink
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"sink {sink}: {message}")


class Sink(Protocol):
    name: str

    async def send(self, alerts: Sequence[Alert]) -> None:
        """Deliver the alerts or raise SinkError."""
