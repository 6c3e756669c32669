"""No-data rules: a store's feed silent for `after` (during its business hours, if the rule
says so). Silence changes no counter, so no update can trigger these rules; instead they are
checked whenever the runtime's event time moves on (at most once per minute of event time) and
at the end of a replay. Both runtimes see the same events, so they judge at the same moments.

Limitation: if every store of a runtime (in the Kafka runtime, of a partition) goes silent at
once, event time stops and nothing is judged until the next event arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from rules.evaluate import Evaluation, evaluate, passes_filters
from rules.kpis import STORE, Snapshot
from rules.load import CompiledRule
from streams.kpi import SEP, Scope, State, bucket_key
from streams.reference import Reference
from streams.windows import hour_period, marketplace_zone


def check(
    state: State,
    reference: Reference,
    rules: tuple[CompiledRule, ...],
    at: datetime,
    partition: int = 0,
) -> Iterator[Evaluation]:
    """Every no_data rule judged at event time `at` for every store whose events come from
    `partition` (a Faust table may only be written for keys of the partition in hand)."""
    for store in _stores(state, partition):
        scope = _store_scope(store, reference)
        for rule in rules:
            if not _watching(rule, scope, at):
                continue
            yield evaluate(rule, _snapshot(state, reference, scope, rule, at))


def _stores(state: State, partition: int) -> list[tuple[str, str, str]]:
    """(platform, marketplace, store) of the stores marked as read from `partition`."""
    found = []
    for prefix, mark in list(state.marks.items()):
        if prefix.startswith(SEP) or mark.get("kind") != "store" or mark.get("p") != partition:
            continue
        platform, marketplace, store = prefix.split(SEP)[:3]
        found.append((platform, marketplace, store))
    return found


def _store_scope(store: tuple[str, str, str], reference: Reference) -> Scope:
    platform, marketplace, store_id = store
    labels = {"platform": platform, "marketplace": marketplace, "store": store_id}
    team = reference.teams.get(store)
    if team is not None:
        labels["team"] = team
    return Scope(STORE, labels, marketplace_zone(platform, marketplace).key)


def _watching(rule: CompiledRule, scope: Scope, at: datetime) -> bool:
    probe = Snapshot(STORE, scope.labels, {}, at, zone=scope.zone)
    if not passes_filters(rule, probe):
        return False
    return not rule.during or any(c.active(at, scope.zone) for c in rule.during)


def _snapshot(
    state: State, reference: Reference, scope: Scope, rule: CompiledRule, at: datetime
) -> Snapshot:
    """The rule's KPI summed over the store's hours that overlap the last `after`."""
    after = rule.no_data.after if rule.no_data else timedelta(0)
    total = Decimal(0)
    for label in _hours(at, after, ZoneInfo(scope.zone)):
        bucket = state.buckets.get(bucket_key(scope, "h", label))
        if bucket is not None:
            total += Decimal(bucket["counters"].get(rule.kpi.name, 0))
    return Snapshot(
        STORE, scope.labels, {rule.kpi.name: total}, at, None, reference.reporting, scope.zone
    )


def _hours(at: datetime, span: timedelta, zone: ZoneInfo) -> list[str]:
    """Labels of the local clock hours that overlap (at - span, at]."""
    labels, moment = [], at
    while True:
        hour = hour_period(moment, zone)
        labels.append(hour.label)
        if hour.start <= at - span:
            return labels
        moment = hour.start - timedelta(seconds=1)
