"""Cross-store scopes (marketplace, platform, team): the stores' hour deltas summed, and judged at
whole hours of event time once every source partition has passed them.

Each batch of a store partition sends every rollup partition one message: the deltas of the
store hours it changed (for the scopes that live there), its batch number and its event time.
A rollup partition applies each source's messages once (a message re-sent after a crash has a
batch number already applied) and judges its scopes at each whole UTC hour that the slowest
source has passed, over the complete hours before it. So the marketplace GMV a rule sees at
10:00 holds every store's sales up to 10:00, however far one partition ran ahead of another,
and the worker and replay judge the same values at the same moments. A source that has sent
nothing for `idle_after` seconds no longer holds the others back (its stores are quiet).

Money stays in minor units per currency; streams.values converts each day at its rate.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from rules.alerts import Alert
from rules.kpis import LEVEL_NAMES
from rules.load import RuleSet
from streams.kpi import RETENTION, Counters, Scope, Touch, add
from streams.pipeline import AlertStates, Judge, Judged
from streams.reference import Reference
from streams.state import META, ROLLUP, RS, StateStore, marker, state_key

LEVELS: Final = {name: level for level, name in LEVEL_NAMES.items()}
FAMILIES: Final = frozenset({"orders", "ads"})
# Hour boundaries judged at once when the watermark jumps: every hour the rollups still hold.
# A batch of a store partition can span days of event time (a worker working off a backlog, or
# taking a partition over), so a smaller cap would make the alerts depend on batch sizes.
MAX_TICKS: Final = int(RETENTION.total_seconds()) // 3600
FOLDED: Final = "day"  # the entry of a day whose hours were summed once it was long complete
FOLD_AFTER: Final = timedelta(days=1)
DEFAULT_IDLE_AFTER: Final = 30.0


@dataclass
class RollupOutput:
    alerts: list[Alert] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0


class RollupState:
    """A rollup partition's scopes: one key per scope and local day, hours inside."""

    def __init__(self, store: StateStore, partition: int) -> None:
        self.store = store
        self.partition = partition
        self._days: dict[str, list[str]] | None = None

    @property
    def meta_key(self) -> str:
        return state_key(self.partition, META)

    def meta(self) -> dict[str, Any]:
        fresh = {"seq": 0, "pos": {}, "src": {}, "tick": None, "scopes": {}, "out": {}}
        return marker(self.store, self.partition, fresh)

    def key(self, target: str, day: date | str) -> str:
        return state_key(self.partition, ROLLUP, target, str(day))

    def days(self, target: str) -> list[str]:
        if self._days is None:
            self._days = {}
            prefix = f"{self.partition}{RS}{ROLLUP}{RS}"
            for key in self.store.all_keys():
                if key.startswith(prefix):
                    _, _, scope, day = key.split(RS)
                    self._days.setdefault(scope, []).append(day)
            for found in self._days.values():
                found.sort()
        return self._days.setdefault(target, [])

    def forget_indexes(self) -> None:
        self._days = None

    def add(self, target: str, day: str, hour: int, counters: Counters) -> None:
        key = self.key(target, day)
        value = self.store.get(key)
        if value is None:
            value = {}
            bisect.insort(self.days(target), day)
        found = value.setdefault(str(hour), {})
        add(found, counters)
        if not found:
            del value[str(hour)]
        self.store.put(key, value)

    def day(self, target: str, day: date, as_of: int | None) -> Counters | None:
        """A scope's counters of one day, counting only hours complete by `as_of`."""
        value = self.store.get(self.key(target, day))
        if value is None:
            return None
        total: Counters = {}
        for hour, counters in value.items():
            if as_of is None or hour == FOLDED or int(hour) + 3600 <= as_of:
                add(total, counters)
        return total

    def fold(self, target: str, day: str) -> None:
        value = self.store.get(self.key(target, day))
        if value is None or list(value) == [FOLDED]:
            return
        total: Counters = {}
        for counters in value.values():
            add(total, counters)
        self.store.put(self.key(target, day), {FOLDED: total})

    def drop(self, target: str, day: str) -> None:
        self.store.delete(self.key(target, day))
        found = self.days(target)
        if day in found:
            found.remove(day)


class RollupCounters:
    """Rollup counters as streams.values reads them, as of a moment (None: everything)."""

    def __init__(self, state: RollupState, as_of: int | None) -> None:
        self.state = state
        self.as_of = as_of

    def day(self, scope: Scope, day: date) -> Counters | None:
        return self.state.day(scope.id, day, self.as_of)

    def hour(self, scope: Scope, hour: int) -> Counters | None:
        return None

    def stock(self, scope: Scope) -> Any:
        return None

    def generation(self, scope: Scope) -> int | None:
        return None  # judged once an hour: nothing worth keeping


def rollup_scope(target: str, entry: list[Any]) -> Scope:
    level_name, labels, zone = entry[0], entry[1], entry[2]
    return Scope(LEVELS[level_name], labels, zone, target, "", target)


class RollupPipeline(Judged):
    """A rollup partition: applies source messages, judges its scopes at whole hours."""

    def __init__(
        self,
        store: StateStore,
        rules: RuleSet,
        reference: Reference | None = None,
        *,
        partition: int = 0,
        sources: int = 1,
        idle_after: float = DEFAULT_IDLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reference = reference or Reference()
        self.state = RollupState(store, partition)
        self.judge = Judge(AlertStates(store, partition), rules, self.reference)
        self.partition = partition
        self.sources = sources
        self.idle_after = idle_after
        self.clock = clock
        self._started = clock()
        self._heard: dict[str, float] = {}
        self._folded: dict[str, str] = {}  # per scope, the newest day folded by this process

    def process(self, messages: Iterable[dict[str, Any]]) -> RollupOutput:
        output = RollupOutput()
        meta = self.state.meta()
        for message in messages:
            if self._apply(message, meta):
                output.applied += 1
            else:
                output.duplicates += 1
        output.alerts.extend(self._ticks(meta))
        meta["seq"] = meta.get("seq", 0) + 1
        self.store.put(self.state.meta_key, meta)
        return output

    def _apply(self, message: dict[str, Any], meta: dict[str, Any]) -> bool:
        source = str(message["src"])
        self._heard[source] = self.clock()
        seen = meta["src"].get(source)
        if seen is not None and message["seq"] <= seen[0]:
            return False  # re-sent after a crash of its source: applied already
        for target, labels, zone, day, hour, counters in message["items"]:
            self.state.add(target, day, hour, counters)
            entry = meta["scopes"].get(target)
            if entry is None:
                meta["scopes"][target] = [_level_name(target), labels, zone, hour]
            elif hour < entry[3]:
                entry[3] = hour
        wm = message["wm"]
        if seen is not None and seen[1] is not None and (wm is None or wm < seen[1]):
            wm = seen[1]
        meta["src"][source] = [message["seq"], wm]
        return True

    def watermark(self, meta: dict[str, Any]) -> int | None:
        """Event time every source has passed (µs), or None while one is awaited."""
        now = self.clock()
        marks = []
        for source, (_, wm) in meta["src"].items():
            heard = self._heard.get(source, self._started)
            if now - heard > self.idle_after:
                continue  # quiet: nothing of it is missing
            if wm is None:
                return None
            marks.append(wm)
        if len(meta["src"]) < self.sources and now - self._started <= self.idle_after:
            return None  # a source not heard from yet may still bring older hours
        return min(marks) if marks else None

    def _ticks(self, meta: dict[str, Any]) -> list[Alert]:
        wm = self.watermark(meta)
        if wm is None:
            return []
        newest = wm // 3_600_000_000 * 3600
        last = meta.get("tick")
        if last is not None and newest <= last:
            return []
        meta["tick"] = newest
        if last is None:
            return []
        alerts: list[Alert] = []
        for hour in range(max(last + 3600, newest - 3600 * (MAX_TICKS - 1)), newest + 1, 3600):
            alerts.extend(self.judge_at(hour, meta))
        self._tidy(newest, meta)
        return alerts

    def judge_at(self, hour: int, meta: dict[str, Any]) -> list[Alert]:
        """Every scope with a complete hour before `hour`, judged at `hour`."""
        source = RollupCounters(self.state, hour)
        alerts: list[Alert] = []
        for target, entry in sorted(meta["scopes"].items()):
            if entry[3] + 3600 > hour:
                continue
            scope = rollup_scope(target, entry)
            at = datetime.fromtimestamp(hour, ZoneInfo(scope.zone))
            day = (at - timedelta(microseconds=1)).date()
            alerts.extend(self.judge.judge(source, Touch(scope, FAMILIES, day, None, at)))
        return alerts

    def _tidy(self, hour: int, meta: dict[str, Any]) -> None:
        """Sum the hours of days long complete; drop days past retention. Days folded before
        are not looked at again (a late delta to one unfolds it until the next restart's
        first tidy: it is still summed right, only kept in hours)."""
        at = datetime.fromtimestamp(hour, UTC)
        for target, entry in meta["scopes"].items():
            zone = ZoneInfo(entry[2])
            fold_before = (at - FOLD_AFTER).astimezone(zone).date().isoformat()
            keep_from = (at - RETENTION).astimezone(zone).date().isoformat()
            days = self.state.days(target)
            while days and days[0] < keep_from:
                self.state.drop(target, days[0])
            folded = self._folded.get(target, "")
            for day in days[bisect.bisect_right(days, folded) :]:
                if day >= fold_before:
                    break
                self.state.fold(target, day)
                self._folded[target] = day

    def scopes(self) -> Iterator[Scope]:
        for target, entry in sorted(self.state.meta()["scopes"].items()):
            yield rollup_scope(target, entry)


def _level_name(target: str) -> str:
    return target.split("\x1f", 1)[0]
