"""KPI values on demand: every scope of a level over one window at a moment, as JSON rows; and
the state as one canonical document.

`kpiwatch kpis` (embedded) and the worker's `/kpis` and `/state` pages (Kafka runtime) both
answer from here, so the two can be compared line for line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.kpis import CATALOG, LEVEL_LABELS, ROLLUPS, SKU, WINDOWS, Level, level_of, level_text
from streams.kpi import Scope, Stores, StoreState, Touch, kpis_level
from streams.pipeline import StoreCounters
from streams.reference import Reference
from streams.rollup import RollupCounters, RollupState, rollup_scope
from streams.state import DAY, HOUR, META, RS, SEP, STOCK, StateStore, key_parts
from streams.values import CounterSource, snapshot
from streams.windows import day_window, hour_start

ALL_FAMILIES = frozenset({"orders", "ads", "inventory", "feed"})


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


class StateReader:
    """Read access to a whole state (every partition present): the stores' table and the
    rollups' table, as the worker holds them or as `streams.embedded.State` does."""

    def __init__(self, stores: StateStore, rollups: StateStore, reference: Reference) -> None:
        self.stores = stores
        self.rollups = rollups
        self.reference = reference
        self.refs = Stores(reference)

    def _partitions(self, store: StateStore) -> list[int]:
        return sorted({int(key_parts(k)[0]) for k in store.all_keys() if key_parts(k)[1] == META})

    def store_scopes(self, level: Level) -> Iterator[tuple[Scope, CounterSource]]:
        """Every scope of a store level that has counters (or, for SKUs, stock)."""
        found: dict[str, tuple[Scope, CounterSource]] = {}
        states: dict[int, StoreState] = {}
        for key in self.stores.all_keys():
            parts = key_parts(key)
            if parts[1] not in (DAY, STOCK):
                continue
            partition = int(parts[0])
            state = states.get(partition)
            if state is None:
                state = states[partition] = StoreState(self.stores, partition, self.refs)
            value = self.stores.get(key) or {}
            ref = self.refs.by_key(parts[2])
            if parts[1] == STOCK:
                suffixes = [f"s{SEP}{sku}" for sku in value] if level == SKU else []
            else:
                suffixes = [s for s in value if kpis_level(s) == level]
            for suffix in suffixes:
                scope = ref.scope(suffix)
                if scope.id not in found:
                    found[scope.id] = (scope, StoreCounters(state))
        for scope_id in sorted(found):
            yield found[scope_id]

    def rollup_scopes(self) -> Iterator[tuple[Scope, CounterSource]]:
        for partition in self._partitions(self.rollups):
            state = RollupState(self.rollups, partition)
            for target, entry in sorted(state.meta()["scopes"].items()):
                yield rollup_scope(target, entry), RollupCounters(state, None)

    def newest_event(self) -> datetime | None:
        """The newest event time of any store (the default `--at` of `kpiwatch kpis`)."""
        newest = None
        for partition in self._partitions(self.stores):
            stores = StoreState(self.stores, partition, self.refs).meta()["stores"]
            for _, last in stores.values():
                newest = last if newest is None else max(newest, last)
        return None if newest is None else datetime.fromtimestamp(newest / 1e6, UTC)

    def dump(self) -> dict[str, Any]:
        """The state as one canonical document, independent of partitions and batches: each
        store's hour and day buckets (with their entities) and stock, each cross-store scope's
        day totals. Equal for equal events, whichever runtime counted them."""
        stores: dict[str, Any] = {}
        for key in sorted(self.stores.all_keys()):
            parts = key_parts(key)
            if parts[1] in (HOUR, DAY):
                bucket = stores.setdefault(parts[2], {}).setdefault(parts[1], {})
                bucket[parts[3]] = self.stores.get(key)
            elif parts[1] == STOCK:
                stores.setdefault(parts[2], {})["stock"] = self.stores.get(key)
        rollups: dict[str, Any] = {}
        for partition in self._partitions(self.rollups):
            state = RollupState(self.rollups, partition)
            for target in sorted(state.meta()["scopes"]):
                for day in state.days(target):
                    total = state.day(target, datetime.fromisoformat(day).date(), None)
                    rollups.setdefault(target.replace(SEP, "/"), {})[day] = total
        return {"stores": {k.replace(SEP, "/"): v for k, v in stores.items()}, "rollups": rollups}


def kpi_rows(
    reader: StateReader,
    by: str,
    window: str,
    at: str | datetime | None,
    *,
    day: date | None = None,
) -> list[dict[str, Any]]:
    """One row per scope with data: labels, window bounds, and every KPI's value (as strings,
    so no digit is lost; null when undefined).

    The window is the one that ends with the period holding `at` (what a rule judged at that
    moment reads), or with `day`, each scope's own local day, when given. The state answers
    with whole buckets: the caller that wants nothing after `at` counted (`kpiwatch kpis`)
    aggregates only the events up to it, and its rows then end at `at`."""
    level = parse_level(by)
    if window not in WINDOWS:
        raise ValueError(f"window {window!r}: use one of {', '.join(WINDOWS)}")
    moment = _moment(at)
    scopes = reader.rollup_scopes() if level in ROLLUPS else reader.store_scopes(level)
    rows = []
    for scope, source in scopes:
        if scope.level == level:
            rows.append(_row(reader, scope, source, window, moment, day))
    return sorted(rows, key=lambda row: sorted(row["scope"].items()))


def _row(
    reader: StateReader,
    scope: Scope,
    source: CounterSource,
    window: str,
    moment: datetime,
    day: date | None,
) -> dict[str, Any]:
    level = scope.level
    windowed = [n for n, s in CATALOG.items() if level in s.levels and window in s.windows]
    current = [n for n, s in CATALOG.items() if level in s.levels and not s.windowed]
    zone = _zone(scope)
    if day is not None:  # the last instant of the scope's own local day
        moment = day_window(day, zone).end - timedelta(microseconds=1)
    hour = hour_start(moment, zone) if level not in ROLLUPS else None
    touch = Touch(scope, ALL_FAMILIES, moment.astimezone(zone).date(), hour, moment)
    view = snapshot(source, reader.reference, touch, window, windowed)
    values = {**view.values, **snapshot(source, reader.reference, touch, None, current).values}
    return {
        "scope": dict(scope.labels),
        "window": window,
        "window_start": view.window.start.isoformat() if view.window else None,
        "window_end": view.window.end.isoformat() if view.window else None,
        "currency": view.currency,
        "values": _strings(values),
        "native_currency": view.native_currency,
        "native": _strings({k: v for k, v in view.native.items() if v is not None}),
    }


def _zone(scope: Scope) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(scope.zone)


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


__all__ = ["RS", "StateReader", "is_rollup", "kpi_rows", "parse_level"]
