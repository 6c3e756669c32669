"""JSON-lines event files: the everyday export format, and what `kpiwatch replay` reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from streams.events import RawRecord


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One RawRecord per non-blank line, its source `path:line`; decoding is the caller's job."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield RawRecord(source=f"{path}:{number}", value=line.rstrip(b"\r\n"))
