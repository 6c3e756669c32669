"""The one processing path both runtimes call, for a partition's stores: messages in, KPI state
changed, rules judged, alert transitions and rollup deltas out.

A batch is a list of messages (a Kafka message, or a group `streams.events.pack` made of a
file). Each message's events are applied, then every scope they touched is judged once, at the
newest event time among them: the moments rules judge at are the messages, the same whatever
batches the messages come in, so replay, a worker and a worker restarted after a crash give the
same transitions. Silence (no_data rules) is judged at the whole UTC hours the partition's event
time passes, over whole local hours before them, and at the store's own events.

The state changes of a batch are written by the caller (`StateStore.commit`, or the worker's
durable batch); what leaves the batch for other partitions is in `Output`: alert transitions, and
per rollup partition one message with the batch's store-hour deltas and this partition's event
time (the rollups' watermark).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from rules.alerts import Alert
from rules.errors import InvalidEventError
from rules.evaluate import Evaluation, evaluate, passes_filters
from rules.kpis import STORE, Snapshot
from rules.lifecycle import Identity, advance, identity
from rules.load import CompiledRule, RuleSet
from streams.events import Event
from streams.kpi import (
    FEED_OK,
    Counters,
    Fact,
    LateEventError,
    Scope,
    StoreRef,
    Stores,
    StoreState,
    Touch,
    facts,
    rollup_items,
)
from streams.reference import Reference
from streams.state import ALERT, StateStore, state_key
from streams.values import PastDays, snapshot
from streams.windows import epoch_us, from_us, hour_start

# Hour boundaries judged at once when event time jumps: silence is counted over at most 72 h,
# so older boundaries could not judge anything new.
MAX_TICKS: Final = 72
# The feed (as connectors report it in feed events) that each silence KPI is read from.
SILENCE_FEEDS: Final = {
    "orders": "orders",
    "units": "orders",
    "clicks": "ads",
    "impressions": "ads",
}
# The feeds a `feed_syncs` silence watches: those polled every few minutes. Amazon Ads reports
# are read once or twice a day, so an hour without an ads pass says nothing.
WATCHED_FEEDS: Final = ("orders", "inventory")


@dataclass
class Message:
    """The events of one Kafka message (or one packed group of a file), and where it came
    from (`topic/partition/offset`, `file:line`), for the errors of its events."""

    events: Sequence[Event]
    source: str = ""
    # Each event's own source when the message held rejected events too (their indexes).
    sources: Sequence[str] | None = None


@dataclass
class Output:
    alerts: list[Alert] = field(default_factory=list)
    rejected: list[InvalidEventError] = field(default_factory=list)
    # One message per rollup partition (index = partition), every batch: items and watermark.
    rollups: list[dict[str, Any]] = field(default_factory=list)


class AlertStates(MutableMapping[str, Any]):
    """The lifecycle's states (rules.lifecycle) as keys of a partition's state."""

    def __init__(self, store: StateStore, partition: int) -> None:
        self.store = store
        self.partition = partition

    def _key(self, fingerprint: str) -> str:
        return state_key(self.partition, ALERT, fingerprint)

    def __getitem__(self, fingerprint: str) -> Any:
        found = self.store.get(self._key(fingerprint))
        if found is None:
            raise KeyError(fingerprint)
        return found

    def get(self, fingerprint: str, default: Any = None) -> Any:
        found = self.store.get(self._key(fingerprint))
        return default if found is None else found

    def __setitem__(self, fingerprint: str, value: Any) -> None:
        self.store.put(self._key(fingerprint), value)

    def __delitem__(self, fingerprint: str) -> None:
        self.store.delete(self._key(fingerprint))

    def __iter__(self) -> Iterator[str]:
        prefix = self._key("")
        return (k[len(prefix) :] for k in self.store.all_keys() if k.startswith(prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Judge:
    """Rules applied to scopes and the lifecycle advanced: shared by both sides (stores and
    rollups). `observe` is told every judged value (the worker's KPI gauges)."""

    IDENTITIES_KEPT = 200_000

    def __init__(self, states: AlertStates, rules: RuleSet, reference: Reference) -> None:
        self.states = states
        self.rules = rules
        self.reference = reference
        self.observe: Callable[[Evaluation], None] | None = None
        # A rule and a scope always make the same alert labels and fingerprint (a hash).
        self._identities: dict[tuple[str, tuple[tuple[str, str], ...], str], Identity] = {}

    def judge(self, source: Any, touch: Touch) -> list[Alert]:
        scope = touch.scope
        plans = self.rules.plan(scope.level, touch.families, scope.labels)
        if not plans:
            return []
        alerts: list[Alert] = []
        for plan in plans:
            view = snapshot(source, self.reference, touch, plan.window, plan.names, plan.baselines)
            alerts.extend(self.advance((evaluate(rule, view) for rule in plan.rules), scope.id))
        return alerts

    def advance(self, evaluations: Iterable[Evaluation], scope: str = "") -> list[Alert]:
        alerts = []
        for evaluation in evaluations:
            if self.observe is not None:
                self.observe(evaluation)
            if not evaluation.judged:
                continue
            known = None
            if scope:
                key = (evaluation.rule.name, evaluation.rule.labels, scope)
                known = self._identities.get(key)
                if known is None:
                    if len(self._identities) >= self.IDENTITIES_KEPT:
                        self._identities.clear()
                    known = self._identities[key] = identity(evaluation)
            alert = advance(self.states, evaluation, known)
            if alert is not None:
                alerts.append(alert)
        return alerts


class StoreCounters:
    """A partition's store counters as streams.values reads them."""

    def __init__(self, state: StoreState) -> None:
        self.state = state
        self.past_days = PastDays()

    def generation(self, scope: Scope) -> int | None:
        return self.state.generations.get(scope.store, 0)

    def day(self, scope: Scope, day: Any) -> Counters | None:
        value = self.state.store.get(self.state.day_key(scope.store, day))
        return None if value is None else value.get(scope.suffix)

    def hour(self, scope: Scope, hour: int) -> Counters | None:
        return self.state.hour_counters(scope.store, hour, scope.suffix)

    def stock(self, scope: Scope) -> Any:
        sku = scope.labels.get("sku")
        return None if sku is None else self.state.stock(scope.store, sku)


class Judged:
    """What both sides share: rules that a reload swaps (through `judge`), a state store."""

    judge: Judge
    state: Any

    @property
    def rules(self) -> RuleSet:
        return self.judge.rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        self.judge.rules = rules

    @property
    def store(self) -> StateStore:
        store: StateStore = self.state.store
        return store


class Pipeline(Judged):
    """A partition's stores: their state, the current rules (swapped on reload) and the
    reference data. `process` runs one batch; the caller commits its state changes."""

    def __init__(
        self,
        store: StateStore,
        rules: RuleSet,
        reference: Reference | None = None,
        *,
        partition: int = 0,
        rollup_partitions: int = 1,
        stores: Stores | None = None,
    ) -> None:
        self.reference = reference or Reference()
        self.stores = stores or Stores(self.reference)
        self.state = StoreState(store, partition, self.stores)
        self.counters = StoreCounters(self.state)
        self.judge = Judge(AlertStates(store, partition), rules, self.reference)
        self.partition = partition
        self.rollup_partitions = rollup_partitions

    def process(self, messages: Iterable[Message]) -> Output:
        """Judge silence at each whole hour event time passes, then apply and judge each
        message in order; expire what is past retention; make the batch's rollup messages."""
        output = Output()
        self.state.changes.hours.clear()
        meta = self.state.meta()
        for message in messages:
            output.alerts.extend(self._message(message, meta, output.rejected))
        self.state.expire()
        meta["seq"] = meta.get("seq", 0) + 1
        output.rollups = self._rollup_messages(meta)
        self.store.put(self.state.meta_key, meta)
        return output

    # -- one message
    def _message(
        self, message: Message, meta: dict[str, Any], rejected: list[InvalidEventError]
    ) -> list[Alert]:
        found = [facts(event, self.stores) for event in message.events]
        if not found:
            return []
        newest = max(fact.occurred_us for fact in found)
        alerts = self._ticks(meta, newest)
        if meta["wm"] is None or newest > meta["wm"]:
            meta["wm"] = newest
        touched: dict[tuple[str, Any], Touch] = {}
        for index, fact in enumerate(found):
            try:
                changed = self.state.apply(fact)
            except LateEventError as exc:
                rejected.append(_located(exc, message, index))
                continue
            for touch in changed:
                _merge(touched, touch)
        for touch in touched.values():
            alerts.extend(self.judge.judge(self.counters, touch))
            if touch.scope.level == STORE:
                alerts.extend(self._silence_at_event(touch))
        return alerts

    # -- silence
    def _silence_at_event(self, touch: Touch) -> list[Alert]:
        """A store's own events end its silence at once (and are a moment to judge it)."""
        rules = [r for r in self.rules.silent if r.kpi.families & touch.families]
        if not rules:
            return []
        store = self.stores.by_key(touch.scope.store)
        meta = self.state.meta()
        first = meta["stores"][store.key][0]
        evaluations = self._silence(store, rules, touch.at, meta, first, own=True)
        return self.judge.advance(evaluations)

    def _ticks(self, meta: dict[str, Any], newest_us: int) -> list[Alert]:
        """Before a message that takes the partition's event time past whole UTC hours: judge
        silence at each of them (at most MAX_TICKS), for the stores that had sent something
        before that hour. Silence is counted over whole hours before the tick, so the state
        holds all of it (a partition's messages come in time order from hour to hour)."""
        newest = newest_us // 3_600_000_000 * 3600
        last = meta.get("tick")
        if last is not None and newest <= last:
            return []
        meta["tick"] = newest
        if last is None or not self.rules.silent:
            return []
        alerts: list[Alert] = []
        for hour in range(max(last + 3600, newest - 3600 * (MAX_TICKS - 1)), newest + 1, 3600):
            for key, (first, _) in meta["stores"].items():
                if first < hour * 1_000_000:
                    store = self.stores.by_key(key)
                    # The tick in the store's own time: how a person reads the alert.
                    at = datetime.fromtimestamp(hour, store.zone)
                    evaluations = self._silence(store, self.rules.silent, at, meta, first)
                    alerts.extend(self.judge.advance(evaluations))
        return alerts

    def _silence(
        self,
        store: StoreRef,
        rules: Sequence[CompiledRule],
        at: datetime,
        meta: dict[str, Any],
        first_us: int,
        *,
        own: bool = False,
    ) -> Iterator[Evaluation]:
        """Each rule's verdict on the store's silence at `at`. A store is only judged silent
        once its feed has been watched for the rule's `after:` (its first event or connector
        report that long ago), and a store whose connector reports its passes is only said
        to have no sales while that feed was read without failing (else the feed-health
        rules speak: the feed is broken, not the store quiet)."""
        scope = store.scope()
        probe = Snapshot(STORE, scope.labels, {}, at, zone=scope.zone)
        reported: dict[str, int] = meta.get("feeds", {}).get(store.key, {})
        for rule in rules:
            if not passes_filters(rule, probe):
                continue
            if rule.during and not any(c.active(at, scope.zone) for c in rule.during):
                continue
            began = first_us
            if rule.kpi.name == "feed_syncs":
                watched = [at_us for feed, at_us in reported.items() if feed in WATCHED_FEEDS]
                if not watched:
                    continue  # no connector reports this store's polled feeds (a file, a push)
                began = min(watched)
            after = rule.no_data.after if rule.no_data else timedelta(0)
            if began > epoch_us(at - after):
                continue  # the feed began less than `after` ago: new, not silent
            totals = self._silence_totals(store, at, after, own)
            feed = SILENCE_FEEDS.get(rule.kpi.name)
            if feed is not None and feed in reported and not totals.get(FEED_OK + feed):
                continue  # no good pass over this feed in the span: not "no sales"
            yield evaluate(rule, self._silence_snapshot(scope, rule, at, totals))

    def _silence_totals(
        self, store: StoreRef, at: datetime, after: timedelta, own: bool
    ) -> Counters:
        """The store's counters summed over its local hours overlapping (at - after, at):
        at a whole-hour tick, the hours before it; at the store's own event, its hour too."""
        totals: Counters = {}
        hour = hour_start(at if own else at - timedelta(microseconds=1), store.zone)
        since = (at - after).timestamp()
        while hour + 3600 > since:
            found = self.state.hour_counters(store.key, hour, "")
            if found is not None:
                for name, value in found.items():
                    totals[name] = totals.get(name, 0) + value
            hour -= 3600
        return totals

    def _silence_snapshot(
        self, scope: Scope, rule: CompiledRule, at: datetime, totals: Counters
    ) -> Snapshot:
        name = rule.kpi.name
        if name == "feed_syncs":
            total = sum(totals.get(FEED_OK + feed, 0) for feed in WATCHED_FEEDS)
        else:
            total = totals.get(name, 0)
        values = {name: _decimal(total)}
        return Snapshot(STORE, scope.labels, values, at, None, self.reference.reporting, scope.zone)

    # -- rollups
    def _rollup_messages(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[list[list[Any]]] = [[] for _ in range(self.rollup_partitions)]
        for item in rollup_items(self.state):
            items[rollup_partition(item[0], self.rollup_partitions)].append(item)
        return [
            {"src": self.partition, "seq": meta["seq"], "wm": meta["wm"], "items": found}
            for found in items
        ]


def rollup_partition(target: str, partitions: int) -> int:
    """The rollup partition a cross-store scope lives in (stable across processes)."""
    return zlib.crc32(target.encode()) % partitions


def _merge(touched: dict[tuple[str, Any], Touch], touch: Touch) -> None:
    """A scope is judged once per message and day it was touched in: at the newest event time
    and hour, for every family that changed it."""
    key = (touch.scope.id, touch.day)
    seen = touched.get(key)
    if seen is None:
        touched[key] = touch
        return
    if (
        seen.at >= touch.at
        and touch.families <= seen.families
        and (touch.hour is None or (seen.hour is not None and seen.hour >= touch.hour))
    ):
        return  # nothing new
    hours = [h for h in (seen.hour, touch.hour) if h is not None]
    touched[key] = Touch(
        seen.scope,
        seen.families | touch.families,
        seen.day,
        max(hours) if hours else None,
        max(seen.at, touch.at),
    )


def _located(exc: InvalidEventError, message: Message, index: int) -> InvalidEventError:
    if message.sources is not None:
        source = message.sources[index]
    else:
        source = message.source if len(message.events) == 1 else f"{message.source}#{index}"
    return type(exc)(source or exc.source, exc.reason)


def _decimal(value: int) -> Any:
    from decimal import Decimal

    return Decimal(value)


__all__ = ["Fact", "Message", "Output", "Pipeline", "from_us"]
