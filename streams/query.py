"""KPI values on demand: every scope of a level over one window at a moment, as JSON rows.

`kpiwatch kpis` (embedded) and the worker's `/kpis` page (Kafka runtime) both answer from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from rules.kpis import LEVEL_LABELS, ROLLUPS, WINDOWS, Level, level_of, level_text
from streams.kpi import State, Touch, scopes_at
from streams.reference import Reference
from streams.values import snapshot
from streams.windows import hour_period, local_day

ALL_FAMILIES = frozenset({"orders", "ads", "inventory"})


def parse_level(by: str) -> Level:
    level = level_of(part.strip() for part in by.split(",") if part.strip())
    if level is None:
        choices = "; ".join(level_text(level) for level in LEVEL_LABELS)
        raise ValueError(f"--by {by!r} names no scope level; use one of: {choices}")
    return level


def is_rollup(by: str) -> bool:
    try:
        return parse_level(by) in ROLLUPS
    except ValueError:
        return False


def kpi_rows(
    state: State, reference: Reference, by: str, window: str, at: str | datetime | None
) -> list[dict[str, Any]]:
    """One row per scope with data: labels, window bounds, and every KPI's value (as strings,
    so no digit is lost; null when undefined)."""
    level = parse_level(by)
    if window not in WINDOWS:
        raise ValueError(f"window {window!r}: use one of {', '.join(WINDOWS)}")
    moment = _moment(at)
    rows = []
    for scope in scopes_at(state, level):
        zone = ZoneInfo(scope.zone)
        touch = Touch(
            scope,
            ALL_FAMILIES,
            date.fromisoformat(local_day(moment, zone).label),
            hour_period(moment, zone).label if level not in ROLLUPS else None,
            moment,
        )
        view = snapshot(state, reference, touch, window)
        values = {**view.values, **snapshot(state, reference, touch, None).values}
        rows.append(
            {
                "scope": dict(scope.labels),
                "window": window,
                "window_start": view.window.start.isoformat() if view.window else None,
                "window_end": view.window.end.isoformat() if view.window else None,
                "currency": view.currency,
                "values": _strings(values),
                "native_currency": view.native_currency,
                "native": _strings({k: v for k, v in view.native.items() if v is not None}),
            }
        )
    return sorted(rows, key=lambda row: sorted(row["scope"].items()))


def _moment(at: str | datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    moment = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    if moment.tzinfo is None:
        raise ValueError(f"--at {at}: give a time zone, e.g. 2026-11-23T12:00:00+09:00")
    return moment


def _strings(values: Mapping[str, Decimal | None]) -> dict[str, str | None]:
    """Decimals as strings, so no digit is lost on the way through JSON; undefined as null."""
    return {k: (None if v is None else str(v)) for k, v in sorted(values.items())}
