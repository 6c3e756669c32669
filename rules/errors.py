"""The exception tree of kpiwatch (every package raises these, so callers catch one root).

KpiwatchError
├── ConfigError            a rule or sink file is wrong (carries every problem, with file:line)
├── InvalidEventError      an event failed validation (carries the source position and reason)
└── ServiceError           a broker, Redis or HTTP peer misbehaved
"""

from __future__ import annotations

from dataclasses import dataclass


class KpiwatchError(Exception):
    """Root of every error kpiwatch raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file, where a person can find it."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class ConfigError(KpiwatchError):
    """A configuration file is wrong; `problems` lists everything found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InvalidEventError(KpiwatchError):
    """An event could not be decoded or validated; it belongs in the dead-letter topic."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ServiceError(KpiwatchError):
    """A service we talk to (Kafka, Redis, an HTTP endpoint) failed."""
