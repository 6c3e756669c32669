"""KPI aggregation: events in, versioned entities and counters per store hour and day updated,
what changed out (the touched scopes to judge, and the store hours to roll up).

Each event is normalised once into a fact (its store's identity and zone, its version time, its
contribution in the selling currency's minor units). Orders, ad intervals and stock snapshots
are versioned entities: the newest version by event time wins whatever order versions arrive in
(a retried "placed" after a "cancelled" changes nothing; an ad restatement older than the
figures already held is ignored), an exact duplicate changes nothing, and on a tie of times the
later arrival wins (a corrected export row). An order's figures stay in the hour and day of its
placement, its earliest known version. The counters of a scope are the sum of its entities'
contributions, kept per local hour (with the entities) and per local day.

Money is counted in integer minor units per currency (`gmv:JPY`); the reporting currency is
applied when values are read (streams.values), a day at that day's rate, so a day's total equals
its local total times the rate, rounded once.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from rules.errors import InvalidEventError
from rules.kpis import CAMPAIGN, LEVEL_LABELS, LEVEL_NAMES, MARKETPLACE, ROLLUPS, SKU, STORE, Level
from streams.events import AdSpendEvent, Event, FeedEvent, OrderEvent, minor_unit_exponent
from streams.reference import Reference
from streams.state import DAY, HOUR, META, RS, SEP, STOCK, StateStore, marker, state_key, store_key
from streams.windows import epoch_us, hour_day, hour_of_day, hour_start, marketplace_zone

Counters = dict[str, int]

# How long state is kept behind a store's newest event: long enough for the longest window
# (28d, month-to-date) and for baselines of several past weeks. Older events are late.
RETENTION: Final = timedelta(days=63)
RETENTION_US: Final = int(RETENTION.total_seconds()) * 1_000_000
# Hourly counters serve windows of at most 24 hours and silence of at most 72: an hour value
# older than this keeps only its entities (late statuses, restatements still find them).
HOURLY_COUNTERS: Final = timedelta(hours=72)
# Expired keys deleted per batch and partition: the rest waits for the next batch.
EXPIRE_PER_BATCH: Final = 500
# Day-bucket counters named SHAPE + local hour hold the orders placed in that hour (baselines).
SHAPE: Final = "orders@"
STATUS_CANCELLED: Final = "cancelled"
RETURNED: Final = frozenset({"returned", "refunded"})
ORDERS: Final = frozenset({"orders"})
ADS: Final = frozenset({"ads"})
STOCK_FAMILY: Final = frozenset({"inventory"})
FEED_FAMILY: Final = frozenset({"feed"})
# A connector's passes per store and feed, counted per hour and day under these prefixes
# (`feed_ok.orders`); feed events are kept per hour under "f" so a repeat counts once.
FEED_OK: Final = "feed_ok."
FEED_FAILED: Final = "feed_failed."
SKU_PREFIX: Final = "s" + SEP
CAMPAIGN_PREFIX: Final = "c" + SEP


class LateEventError(InvalidEventError):
    """An event older than the retention of the state it belongs to."""


# ---------------------------------------------------------------- scopes


@dataclass(frozen=True, slots=True)
class Scope:
    """A scope whose KPIs rules judge: a store, one of its SKUs or campaigns, or a cross-store
    rollup. `id` names it uniquely; `store` and `suffix` locate a store scope's counters."""

    level: Level
    labels: dict[str, str]
    zone: str
    id: str
    store: str = ""
    suffix: str = ""

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(slots=True)
class Touch:
    """A scope an event (or a message's events) changed, in which local period, when."""

    scope: Scope
    families: frozenset[str]
    day: date
    hour: int | None  # the local hour's start (epoch seconds); None: judged per day only
    at: datetime


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A store's identity, zone and labels (the owning team from the reference data)."""

    key: str
    platform: str
    marketplace: str
    store_id: str
    zone: ZoneInfo
    labels: dict[str, str]
    scopes: dict[str, Scope] = field(default_factory=dict)

    def scope(self, suffix: str = "") -> Scope:
        found = self.scopes.get(suffix)
        if found is None:
            found = self.scopes[suffix] = self._scope(suffix)
        return found

    def _scope(self, suffix: str) -> Scope:
        if not suffix:
            return Scope(STORE, self.labels, self.zone.key, self.key + RS, self.key, "")
        kind, value = suffix.split(SEP, 1)
        level, label = (SKU, "sku") if kind == "s" else (CAMPAIGN, "campaign")
        labels = {**self.labels, label: value}
        return Scope(level, labels, self.zone.key, self.key + RS + suffix, self.key, suffix)


class Stores:
    """StoreRefs made once per store (zone lookup, team from the reference)."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self._refs: dict[tuple[str, str, str], StoreRef] = {}

    def ref(self, platform: str, marketplace: str, store_id: str) -> StoreRef:
        found = self._refs.get((platform, marketplace, store_id))
        if found is None:
            labels = {"platform": platform, "marketplace": marketplace, "store": store_id}
            team = self.reference.teams.get((platform, marketplace, store_id))
            if team is not None:
                labels["team"] = team
            found = StoreRef(
                store_key(platform, marketplace, store_id),
                platform,
                marketplace,
                store_id,
                marketplace_zone(platform, marketplace),
                labels,
            )
            self._refs[(platform, marketplace, store_id)] = found
        return found

    def by_key(self, key: str) -> StoreRef:
        platform, marketplace, store_id = key.split(SEP)
        return self.ref(platform, marketplace, store_id)


# ---------------------------------------------------------------- facts


@dataclass(slots=True)
class Fact:
    """One event, normalised: its store, times, and what it says in minor units."""

    store: StoreRef
    event_id: str
    at: datetime  # occurred_at
    at_us: int  # the version: occurred_at (as_of for stock), epoch microseconds
    kind: str  # order | ad_spend | inventory
    key: str  # order id; campaign SEP sku SEP start SEP end; sku SEP warehouse
    body: list[Any]  # the entity's content (see _order_body, _ad_body)
    moment: datetime  # the time lateness is judged by (interval start for ads)
    occurred_us: int
    moment_us: int
    # Orders: when the order was placed (placed_at, else occurred_at), epoch microseconds.
    placed_us: int = 0


def facts(event: Event, stores: Stores) -> Fact:
    store = stores.ref(event.platform, event.marketplace, event.store_id)
    at = event.occurred_at
    at_us = epoch_us(at)
    if isinstance(event, OrderEvent):
        body = _order_body(event, stores.reference)
        placed = at_us if event.placed_at is None else epoch_us(event.placed_at)
        return Fact(
            store,
            event.event_id,
            at,
            at_us,
            "order",
            event.order_id,
            body,
            at,
            at_us,
            at_us,
            placed,
        )
    if isinstance(event, FeedEvent):
        body = [event.feed, event.status]
        return Fact(
            store, event.event_id, at, at_us, "feed", event.event_id, body, at, at_us, at_us
        )
    if isinstance(event, AdSpendEvent):
        start, end = epoch_us(event.interval_start), epoch_us(event.interval_end)
        key = SEP.join((event.campaign_id, event.sku or "", str(start), str(end)))
        body = _ad_body(event)
        begins = event.interval_start
        return Fact(store, event.event_id, at, at_us, "ad_spend", key, body, begins, at_us, start)
    key = SEP.join((event.sku, event.warehouse))
    body = [event.available, event.inbound, event.reserved]
    version = epoch_us(event.as_of)
    return Fact(store, event.event_id, at, version, "inventory", key, body, at, at_us, at_us)


def _order_body(event: OrderEvent, reference: Reference) -> list[Any]:
    """[status, is_test, currency, lines]; a line is [sku, quantity, gross minor, cost minor or
    -1 when the unit cost is unknown, cost currency]. The cost is fixed when the version is
    taken, so a later change of the cost file cannot unbalance what is subtracted."""
    lines = []
    for line in event.lines:
        cost = reference.costs.get((event.platform, event.marketplace, event.store_id, line.sku))
        cost_minor, cost_currency = -1, ""
        if cost is not None:
            exponent = minor_unit_exponent(cost.currency)
            cost_minor = int((cost.value * line.quantity).scaleb(exponent))
            cost_currency = cost.currency
        gross = line.unit_price.minor_units() * line.quantity
        lines.append([line.sku, line.quantity, gross, cost_minor, cost_currency])
    return [event.status, int(event.is_test), event.currency, lines]


def _ad_body(event: AdSpendEvent) -> list[Any]:
    """[currency, impressions, clicks, attributed orders, spend minor, sales minor]."""
    return [
        event.spend.currency,
        event.impressions,
        event.clicks,
        event.attributed_orders,
        event.spend.minor_units(),
        event.attributed_sales.minor_units(),
    ]


# ---------------------------------------------------------------- contributions


def order_parts(body: list[Any]) -> dict[str, Counters]:
    """What an order counts for, per scope suffix ("" store, "s<US>sku" per SKU)."""
    status, test, currency, lines = body
    if test:
        return {}
    by_sku: dict[str, list[list[Any]]] = {}
    for line in lines:
        by_sku.setdefault(SKU_PREFIX + line[0], []).append(line)
    if status == STATUS_CANCELLED:
        return {suffix: {"cancelled_orders": 1} for suffix in ("", *by_sku)}
    parts = {"": _order_counters(status, currency, lines)}
    for suffix, group in by_sku.items():
        parts[suffix] = _order_counters(status, currency, group)
    return parts


def _order_counters(status: str, currency: str, lines: list[list[Any]]) -> Counters:
    units = sum(line[1] for line in lines)
    gross = sum(line[2] for line in lines)
    counters: Counters = {"orders": 1, "units": units, "gmv:" + currency: gross}
    for _, _, _, cost, cost_currency in lines:
        if cost < 0:
            counters["cost_missing"] = counters.get("cost_missing", 0) + 1
        else:
            name = "cost:" + cost_currency
            counters[name] = counters.get(name, 0) + cost
    if status in RETURNED:
        counters["returned_units"] = units
        counters["refunds:" + currency] = gross
    return counters


def ad_parts(key: str, body: list[Any]) -> dict[str, Counters]:
    campaign, sku, _, _ = key.split(SEP)
    currency, impressions, clicks, orders, spend, sales = body
    counters = {
        "impressions": impressions,
        "clicks": clicks,
        "ad_orders": orders,
        "ad_spend:" + currency: spend,
        "ad_sales:" + currency: sales,
    }
    parts = {"": counters, CAMPAIGN_PREFIX + campaign: counters}
    if sku:
        parts[SKU_PREFIX + sku] = counters
    return parts


def add(counters: Counters, delta: Counters, sign: int = 1) -> None:
    """counters += sign * delta, dropping what comes to zero."""
    get = counters.get
    if sign == 1:
        for name, change in delta.items():
            value = get(name, 0) + change
            if value:
                counters[name] = value
            else:
                counters.pop(name, None)
        return
    for name, change in delta.items():
        value = get(name, 0) - change
        if value:
            counters[name] = value
        else:
            counters.pop(name, None)


def shape_name(local_hour: int) -> str:
    """The day-bucket counter of the orders placed in one local clock hour (`orders@07`)."""
    return f"{SHAPE}{local_hour:02d}"


# ---------------------------------------------------------------- the partition's state


@dataclass
class StoreIndex:
    """What is found in a store's keys without reading them all each time: its hour and day
    buckets in time order (for windows and expiry) and where each of its orders lives."""

    hours: list[int] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    orders: dict[str, int] | None = None  # read from the hour buckets when first needed


@dataclass
class BatchChanges:
    """What a batch changed that someone else needs: store hours to roll up."""

    hours: dict[tuple[str, int], Counters] = field(default_factory=dict)


class StoreState:
    """The state of one partition's stores in a StateStore, with its in-memory indexes."""

    def __init__(self, store: StateStore, partition: int, stores: Stores) -> None:
        self.store = store
        self.partition = partition
        self.stores = stores
        self._index: dict[str, StoreIndex] | None = None
        self.changes = BatchChanges()
        self._expiring: set[str] = set()
        self._day_prefixes: dict[str, str] = {}
        self._hour_prefixes: dict[str, str] = {}
        # Per store, the newest local day written and a number bumped whenever an older day
        # changes (late events, statuses of past orders): sums of past days stay valid until.
        self._newest_day: dict[str, str] = {}
        self.generations: dict[str, int] = {}
        self._trimmed: dict[str, int] = {}  # per store, the newest hour whose counters are gone

    # -- keys
    def hour_key(self, store: str, hour: int) -> str:
        prefix = self._hour_prefixes.get(store)
        if prefix is None:
            prefix = self._hour_prefixes[store] = state_key(self.partition, HOUR, store, "")
        return prefix + str(hour)

    def day_key(self, store: str, day: date | str) -> str:
        prefix = self._day_prefixes.get(store)
        if prefix is None:
            prefix = self._day_prefixes[store] = state_key(self.partition, DAY, store, "")
        return prefix + (day if isinstance(day, str) else _iso(day))

    def stock_key(self, store: str) -> str:
        return state_key(self.partition, STOCK, store)

    @property
    def meta_key(self) -> str:
        return state_key(self.partition, META)

    def meta(self) -> dict[str, Any]:
        fresh = {"seq": 0, "pos": {}, "wm": None, "tick": None, "stores": {}, "out": {}}
        return marker(self.store, self.partition, fresh)

    # -- indexes
    def index(self, store: str) -> StoreIndex:
        if self._index is None:
            self._index = self._scan()
        found = self._index.get(store)
        if found is None:
            found = self._index[store] = StoreIndex()
        return found

    def _scan(self) -> dict[str, StoreIndex]:
        """One pass over this partition's key names (after a start or a rebalance): the hour
        and day buckets of every store."""
        index: dict[str, StoreIndex] = {}
        prefix = f"{self.partition}{RS}"
        for key in self.store.all_keys():
            if not key.startswith(prefix):
                continue
            parts = key.split(RS)
            if parts[1] == HOUR:
                index.setdefault(parts[2], StoreIndex()).hours.append(int(parts[3]))
            elif parts[1] == DAY:
                index.setdefault(parts[2], StoreIndex()).days.append(parts[3])
        for entry in index.values():
            entry.hours.sort()
            entry.days.sort()
        return index

    def orders(self, store: str) -> dict[str, int]:
        """Where each order of a store lives (its placement hour), read once per store."""
        index = self.index(store)
        if index.orders is None:
            index.orders = {}
            for hour in index.hours:
                value = self.store.get(self.hour_key(store, hour)) or {}
                for order_id in value.get("o", {}):
                    index.orders[order_id] = hour
        return index.orders

    def forget_indexes(self) -> None:
        """After a discarded batch or a recovery the indexes may not match the state."""
        self._index = None
        self._expiring.clear()
        self._trimmed.clear()
        for store in self.generations:
            self.generations[store] += 1

    # -- buckets
    def hour_value(self, store: str, hour: int) -> dict[str, Any]:
        key = self.hour_key(store, hour)
        value = self.store.get(key)
        if value is None:
            value = {"o": {}, "a": {}, "c": {}}
            bisect.insort(self.index(store).hours, hour)
        self.store.put(key, value)
        return value  # type: ignore[no-any-return]

    def day_value(self, store: str, day: str) -> dict[str, Counters]:
        key = self.day_key(store, day)
        value = self.store.get(key)
        if value is None:
            value = {}
            bisect.insort(self.index(store).days, day)
        self.store.put(key, value)
        return value  # type: ignore[no-any-return]

    def day_counters(self, store: str, day: str, suffix: str) -> Counters | None:
        value = self.store.get(self.day_key(store, day))
        return None if value is None else value.get(suffix)

    def hour_counters(self, store: str, hour: int, suffix: str) -> Counters | None:
        value = self.store.get(self.hour_key(store, hour))
        return None if value is None else value.get("c", {}).get(suffix)

    def stock(self, store: str, sku: str) -> dict[str, list[int]] | None:
        value = self.store.get(self.stock_key(store))
        return None if value is None else value.get(sku)

    # -- applying facts
    def apply(self, fact: Fact) -> list[Touch]:
        """Fold one fact into the state; the scopes it changed. Raises LateEventError for an
        event past retention behind its store's newest event."""
        self._mark(fact)
        if fact.kind == "order":
            return self._apply_order(fact)
        if fact.kind == "ad_spend":
            return self._apply_ad(fact)
        if fact.kind == "feed":
            return self._apply_feed(fact)
        return self._apply_stock(fact)

    def _mark(self, fact: Fact) -> None:
        stores = self.meta()["stores"]
        mark = stores.get(fact.store.key)
        if mark is not None and fact.moment_us < mark[1] - RETENTION_US:
            newest = datetime.fromtimestamp(mark[1] / 1e6, UTC).isoformat()
            raise LateEventError(
                f"{fact.store.store_id}/{fact.event_id}",
                f"late: {fact.moment.isoformat()} is more than {RETENTION.days} days before the "
                f"newest event of store {fact.store.store_id} ({newest})",
            )
        at = fact.occurred_us
        if mark is None:
            stores[fact.store.key] = [at, at]
        elif at > mark[1] or at < mark[0]:
            if at // 86_400_000_000 > mark[1] // 86_400_000_000:
                self._expiring.add(fact.store.key)
            stores[fact.store.key] = [min(mark[0], at), max(mark[1], at)]

    def _apply_order(self, fact: Fact) -> list[Touch]:
        store = fact.store
        orders = self.orders(store.key)
        old_hour = orders.get(fact.key)
        old = None
        if old_hour is not None:
            old = self.store.get(self.hour_key(store.key, old_hour))["o"].get(fact.key)
        if old is None:
            new = [fact.at_us, fact.placed_us, *fact.body]
        else:
            t0 = min(old[1], fact.placed_us)
            if fact.at_us >= old[0]:
                new = [fact.at_us, t0, *fact.body]
                _keep_lines(new, old[2:])
            else:
                new = [old[0], t0, *old[2:]]
                _keep_lines(new, fact.body)
            if new == old:
                return []
        zone = store.zone
        new_hour = hour_start(_at(new[1]), zone)
        parts = order_parts(new[2:])
        if old is not None and old_hour is not None:
            before = order_parts(old[2:])
            if old_hour != new_hour:
                self._settle(store, old_hour, before, -1)
                self._settle(store, new_hour, parts, 1)
                del self.hour_value(store.key, old_hour)["o"][fact.key]
            else:
                self._settle(store, new_hour, _difference(parts, before), 1)
        else:
            self._settle(store, new_hour, parts, 1)
        self.hour_value(store.key, new_hour)["o"][fact.key] = new
        orders[fact.key] = new_hour
        day = hour_day(new_hour, zone)
        suffixes = parts.keys() | (order_parts(old[2:]).keys() if old is not None else set())
        return [Touch(store.scope(s), ORDERS, day, new_hour, fact.at) for s in _ordered(suffixes)]

    def _apply_ad(self, fact: Fact) -> list[Touch]:
        store = fact.store
        hour = hour_start(fact.moment, store.zone)
        entities = self.hour_value(store.key, hour)["a"]
        old = entities.get(fact.key)
        if old is not None and fact.at_us < old[0]:
            return []  # an older report than the one held
        new = [fact.at_us, *fact.body]
        if new == old:
            return []
        parts = ad_parts(fact.key, fact.body)
        if old is not None:
            self._settle(store, hour, _difference(parts, ad_parts(fact.key, old[1:])), 1)
        else:
            self._settle(store, hour, parts, 1)
        entities[fact.key] = new
        day = hour_day(hour, store.zone)
        return [Touch(store.scope(s), ADS, day, hour, fact.at) for s in parts]

    def _apply_feed(self, fact: Fact) -> list[Touch]:
        """A connector's pass: counted once per event id in its hour and day, for the store
        only (it is no sale: nothing rolls up), and the store noted as reporting its feeds."""
        store = fact.store
        hour = hour_start(fact.at, store.zone)
        value = self.hour_value(store.key, hour)
        seen = value.setdefault("f", {})
        if fact.key in seen:
            return []
        feed, status = fact.body
        seen[fact.key] = status
        counters = {(FEED_OK if status == "ok" else FEED_FAILED) + feed: 1}
        hourly = value.get("c")
        if hourly is not None:
            _add_to(hourly, "", counters, 1)
        day_name = _iso(hour_day(hour, store.zone))
        newest = self._newest_day.get(store.key)
        if newest is None or day_name > newest:
            self._newest_day[store.key] = day_name
        elif day_name < newest:
            self.generations[store.key] = self.generations.get(store.key, 0) + 1
        _add_to(self.day_value(store.key, day_name), "", counters, 1)
        # Per store and feed, its first report: when the connector began watching it.
        reporting = self.meta().setdefault("feeds", {}).setdefault(store.key, {})
        known = reporting.get(feed)
        if known is None or fact.occurred_us < known:
            reporting[feed] = fact.occurred_us
        day = hour_day(hour, store.zone)
        return [Touch(store.scope(), FEED_FAMILY, day, hour, fact.at)]

    def _apply_stock(self, fact: Fact) -> list[Touch]:
        store = fact.store
        key = self.stock_key(store.key)
        value = self.store.get(key) or {}
        sku, warehouse = fact.key.split(SEP)
        warehouses = value.setdefault(sku, {})
        old = warehouses.get(warehouse)
        if old is not None and fact.at_us < old[0]:
            return []  # an older snapshot arriving late: the newest as_of wins
        new = [fact.at_us, *fact.body]
        if new == old:
            return []
        warehouses[warehouse] = new
        self.store.put(key, value)
        day = fact.at.astimezone(store.zone).date()
        return [Touch(store.scope(SKU_PREFIX + sku), STOCK_FAMILY, day, None, fact.at)]

    def _settle(self, store: StoreRef, hour: int, parts: dict[str, Counters], sign: int) -> None:
        """Add (or take back) contributions in the hour and day buckets of `hour`."""
        hourly = self.hour_value(store.key, hour).get("c")  # None: trimmed, long past
        day = _iso(hour_day(hour, store.zone))
        newest = self._newest_day.get(store.key)
        if newest is None or day > newest:
            self._newest_day[store.key] = day
        elif day < newest:
            self.generations[store.key] = self.generations.get(store.key, 0) + 1
        daily = self.day_value(store.key, day)
        for suffix, counters in parts.items():
            if hourly is not None:
                _add_to(hourly, suffix, counters, sign)
            _add_to(daily, suffix, counters, sign)
        whole = parts.get("")
        if whole is None:
            return
        rolled = self.changes.hours.setdefault((store.key, hour), {})
        add(rolled, whole, sign)
        orders = whole.get("orders")
        if orders:
            shape = {shape_name(hour_of_day(hour, store.zone)): orders}
            _add_to(daily, "", shape, sign)
            add(rolled, shape, sign)

    # -- expiry
    def expire(self) -> int:
        """Delete what stores that moved on no longer keep, at most EXPIRE_PER_BATCH keys."""
        budget = EXPIRE_PER_BATCH
        stores = self.meta()["stores"]
        for store in sorted(self._expiring):
            mark = stores.get(store)
            if mark is None:
                self._expiring.discard(store)
                continue
            budget -= self._expire_store(store, mark[1] - RETENTION_US, budget)
            if budget <= 0:
                break
            self._expiring.discard(store)
        return EXPIRE_PER_BATCH - budget

    def _expire_store(self, store: str, cutoff_us: int, budget: int) -> int:
        index = self.index(store)
        zone = self.stores.by_key(store).zone
        cutoff = cutoff_us // 1_000_000
        removed = self._trim_store(store, index, cutoff, budget)
        while index.hours and index.hours[0] + 3600 <= cutoff and removed < budget:
            hour = index.hours.pop(0)
            key = self.hour_key(store, hour)
            if index.orders is not None:
                for order_id in (self.store.get(key) or {}).get("o", {}):
                    index.orders.pop(order_id, None)
            self.store.delete(key)
            removed += 1
        last_day = datetime.fromtimestamp(cutoff, zone).date() - timedelta(days=1)
        while index.days and index.days[0] <= last_day.isoformat() and removed < budget:
            self.store.delete(self.day_key(store, index.days.pop(0)))
            self.generations[store] = self.generations.get(store, 0) + 1
            removed += 1
        return removed

    def _trim_store(self, store: str, index: StoreIndex, cutoff: int, budget: int) -> int:
        """Drop the hourly counters of hour values past HOURLY_COUNTERS (at most `budget`)."""
        until = cutoff + int((RETENTION - HOURLY_COUNTERS).total_seconds())
        start = bisect.bisect_right(index.hours, self._trimmed.get(store, 0))
        trimmed = 0
        for hour in index.hours[start:]:
            if hour + 3600 > until or trimmed >= budget:
                break
            key = self.hour_key(store, hour)
            value = self.store.get(key)
            if value is not None and "c" in value:
                del value["c"]
                self.store.put(key, value)
                trimmed += 1
            self._trimmed[store] = hour
        return trimmed


def _keep_lines(entity: list[Any], other: list[Any]) -> None:
    """A cancellation that carries no lines keeps the lines the other version knows, so the
    order's SKUs still count it as cancelled."""
    if not entity[5] and other[3]:
        entity[4], entity[5] = other[2], other[3]


def _difference(new: dict[str, Counters], old: dict[str, Counters]) -> dict[str, Counters]:
    """new - old, per scope suffix (every suffix of either, possibly empty)."""
    found: dict[str, Counters] = {}
    for suffix in new.keys() | old.keys():
        delta = dict(new.get(suffix, {}))
        add(delta, old.get(suffix, {}), -1)
        found[suffix] = delta
    return found


@functools.lru_cache(maxsize=4096)
def _iso(day: date) -> str:
    return day.isoformat()


def _add_to(buckets: dict[str, Counters], suffix: str, counters: Counters, sign: int) -> None:
    found = buckets.get(suffix)
    if found is None:
        found = buckets[suffix] = {}
    add(found, counters, sign)
    if not found:
        del buckets[suffix]


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC) + timedelta(microseconds=us % 1_000_000)


def _ordered(suffixes: Iterable[str]) -> list[str]:
    return sorted(suffixes)


# ---------------------------------------------------------------- rollups across stores


def rollup_targets(store: StoreRef) -> list[tuple[Level, dict[str, str], str]]:
    """(level, labels, zone) of the cross-store scopes a store counts in."""
    labels = store.labels
    found = []
    for level in ROLLUPS:
        names = LEVEL_LABELS[level]
        if all(name in labels for name in names):
            zone = store.zone.key if level == MARKETPLACE else "UTC"
            found.append((level, {name: labels[name] for name in names}, zone))
    return found


def rollup_id(level: Level, labels: dict[str, str]) -> str:
    return SEP.join((LEVEL_NAMES[level], *(labels[n] for n in LEVEL_LABELS[level])))


def rollup_items(state: StoreState) -> Iterator[list[Any]]:
    """The batch's store hours as rollup items: [target id, labels, zone, local day, hour start,
    counters], one per target scope of the store (a marketplace, a platform, a team)."""
    for (store_key_, hour), counters in state.changes.hours.items():
        if not counters:
            continue
        store = state.stores.by_key(store_key_)
        day = hour_day(hour, store.zone).isoformat()
        for level, labels, zone in rollup_targets(store):
            yield [rollup_id(level, labels), labels, zone, day, hour, counters]


def kpis_level(suffix: str) -> Level:
    """The scope level of a store bucket's suffix ("" store, s<US>sku, c<US>campaign)."""
    if not suffix:
        return STORE
    return SKU if suffix.startswith(SKU_PREFIX) else CAMPAIGN
