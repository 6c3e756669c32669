"""Memory of the engine's state per (scope, period) bucket, at catalogue scale (default 100k SKUs,
1 day).

Drives the embedded engine (streams.embedded.Engine with no rules: a store partition and a rollup
partition, each batch of BATCH_MESSAGES messages committed, as `kpiwatch replay` and the worker
do) with one day of hourly ad reports per SKU and a stock snapshot per SKU every 4 h (the
simulator's cadence). Events come one message per store and hour, the groups streams.events.pack
makes of such a stream; each message is made when the engine reads it and dropped after, so RSS
grows by state (and by what the allocator keeps). Then it prints:
  - events applied and events/s;
  - per kind of state key (store hour, store day, stock, alert lifecycle, meta, rollup day...):
    keys, encoded bytes (the JSON values: what the changelog and the backing dict hold) and
    resident bytes (sys.getsizeof of each key and value, and its share of the dict);
  - the (scope, period) buckets the state holds: each store, SKU or campaign counters entry of
    an hour value is one (scope, hour), each entry of a day value one (scope, day), each hour
    (or folded day) of a rollup value one (cross-store scope, hour or day);
  - RSS (/proc/self/statm) of two processes:
      the building one: before; "warm", after the last batch, its StateStore caches holding
      decoded values of up to DEFAULT_CACHE_BYTES of JSON (what a busy worker holds); "kept",
      once the engine and its caches are dropped (gc, glibc malloc_trim), which still counts
      the freed memory its allocator keeps (pymalloc arenas pinned by a few live objects);
      a fresh interpreter given the state's dicts (through a temporary file), as a worker after
      recovering its tables: "at rest", the dicts loaded, nothing decoded (the encoded bytes
      alone); "warm", every key then read once through StateStores with the default cache;
  - the issue's aim, "<= 500 bytes per (key, window) at 100k SKUs", read as bytes per (scope,
    period) bucket: encoded bytes / buckets, and each RSS growth above / buckets;
  - where the encoded bytes go: per part of the values (ad entities, counters per scope level,
    stock entries), entries and bytes, split into the member's key (scope or entity id), the
    names inside it (counters, warehouses) and the rest (numbers, punctuation); and how many
    separators (ASCII US/RS) JSON escapes as 6-byte \\u001f.

The worker's Faust tables (store="memory://") hold these same key -> bytes mappings, plus per
key an entry in the store's `_key_partition` dict, and the caches of its store partitions share
about DEFAULT_CACHE_BYTES (streams.app); recovery rebuilds the tables from the changelog, so its
RSS per bucket is at least the fresh process's figures.

Usage: .venv/bin/python bench/state_memory.py [--skus 100000] [--skus-per-store 100] [--hours 24]
                                              [--inventory-every 4]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import marshal
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from connectors.simulator import MARKETS
from rules.load import RuleSet
from streams.embedded import BATCH_MESSAGES, Engine, State
from streams.events import AdSpendEvent, Event, InventoryEvent, Money
from streams.kpi import CAMPAIGN_PREFIX, SKU_PREFIX
from streams.pipeline import Message
from streams.rollup import FOLDED
from streams.state import (
    ALERT,
    DAY,
    DEFAULT_CACHE_BYTES,
    HOUR,
    META,
    REDO,
    ROLLUP,
    SENT,
    STOCK,
    StateStore,
    decode_value,
    encode_value,
    key_parts,
)

START: Final = datetime(2026, 1, 5, tzinfo=UTC)
AIM: Final = 500  # bytes per (scope, period) bucket
MIB: Final = 2**20
KINDS: Final = {
    HOUR: "hour",
    DAY: "day",
    STOCK: "stock",
    ALERT: "alert",
    META: "meta",
    REDO: "redo",
    SENT: "sent",
    ROLLUP: "rollup day",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--skus-per-store", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24, help="hours of events (default 24)")
    parser.add_argument("--inventory-every", type=int, default=4, help="hours between snapshots")
    args = parser.parse_args()

    state, built = build(args)
    print(
        f"\n{args.skus:,} SKUs ({args.skus_per_store} per store), {args.hours} h, stock every "
        f"{args.inventory_every} h: {built.events:,} events applied in {built.seconds:.0f} s "
        f"({built.events / built.seconds:,.0f} events/s)"
    )
    fresh = in_fresh_process(state)
    tally = Tally.of(state)
    tally.print_keys()
    tally.print_buckets()
    print_memory(built, fresh)
    print_aim(tally, built, fresh)
    tally.print_parts()


# ---------------------------------------------------------------- events


def _messages(args: argparse.Namespace) -> Iterator[Message]:
    """Hour by hour, one message per store: its SKUs' ad reports and, every few hours, their
    stock snapshots (what streams.events.pack makes of the same events in this order)."""
    stores = -(-args.skus // args.skus_per_store)
    templates = [_template(store) for store in range(stores)]
    serial = itertools.count(1)
    for hour in range(args.hours):
        start = START + timedelta(hours=hour)
        snapshot = hour % args.inventory_every == args.inventory_every - 1
        for store, template in enumerate(templates):
            events: list[Event] = []
            first = store * args.skus_per_store
            for number in range(first, min(first + args.skus_per_store, args.skus)):
                sku = f"SKU-{store:05d}-{number % args.skus_per_store:04d}"
                events.append(_ad(template, sku, start, next(serial)))
                if snapshot:
                    events.append(_inventory(template, sku, start, next(serial)))
            yield Message(events, f"bench:{hour}:{store}")


def _template(store: int) -> AdSpendEvent:
    market = MARKETS[store % len(MARKETS)]
    spend = Money(amount=market.cpc * 10, currency=market.currency)
    return AdSpendEvent.model_validate(
        {
            "event_id": "template",
            "occurred_at": START,
            "platform": market.platform,
            "marketplace": market.marketplace,
            "store_id": f"{market.platform}-{market.marketplace.lower()}-{store:05d}",
            "campaign_id": "template",
            "interval_start": START,
            "interval_end": START + timedelta(hours=1),
            "impressions": 600,
            "clicks": 10,
            "spend": spend,
            "attributed_sales": Money(amount=market.price * 2, currency=market.currency),
            "attributed_orders": 2,
        }
    )


def _ad(template: AdSpendEvent, sku: str, start: datetime, serial: int) -> Event:
    # model_copy skips validation: the template was validated and only ids and times change.
    return template.model_copy(
        update={
            "event_id": f"mem-{serial:09d}",
            "occurred_at": start + timedelta(hours=1, minutes=5),
            "campaign_id": f"sp-{template.store_id}-{sku}",
            "sku": sku,
            "interval_start": start,
            "interval_end": start + timedelta(hours=1),
            "clicks": 10 + serial % 7,
            "spend": Money(
                amount=template.spend.amount + Decimal(serial % 5),
                currency=template.spend.currency,
            ),
        }
    )


def _inventory(template: AdSpendEvent, sku: str, start: datetime, serial: int) -> Event:
    at = start + timedelta(minutes=59)
    return InventoryEvent(
        event_id=f"mem-{serial:09d}",
        occurred_at=at,
        platform=template.platform,
        marketplace=template.marketplace,
        store_id=template.store_id,
        sku=sku,
        warehouse="fba",
        available=500 - serial % 400,
        as_of=at,
    )


def run(engine: Engine, messages: Iterator[Message], progress: bool = False) -> int:
    """Feed the engine batches of BATCH_MESSAGES messages, each committed; events applied."""
    count = 0
    last = time.perf_counter()

    def counted(batch: Iterator[Message]) -> Iterator[Message]:
        nonlocal count
        for message in batch:
            count += len(message.events)
            yield message

    while (first := next(messages, None)) is not None:
        batch = itertools.chain([first], itertools.islice(messages, BATCH_MESSAGES - 1))
        _, rejected = engine.process(counted(batch))
        if rejected:
            raise rejected[0]
        if progress and time.perf_counter() - last >= 10:
            last = time.perf_counter()
            print(f"applied {count:>10,} events, RSS {rss() / MIB:,.0f} MiB", flush=True)
    return count


# ---------------------------------------------------------------- memory


@dataclass(frozen=True)
class Built:
    """The building process: events applied, and its RSS (bytes) before, right after the last
    batch (caches warm), and once the engine and its caches are dropped (what it keeps)."""

    events: int
    seconds: float
    before: int
    warm: int
    kept: int
    cached: int  # JSON bytes the caches held decoded after the last batch


@dataclass(frozen=True)
class Fresh:
    """A fresh interpreter given the state's dicts: its RSS (bytes) once its modules are loaded,
    once the state is loaded (at rest), and once every key was read through a StateStore."""

    base: int
    rest: int
    warm: int
    cached: int


def build(args: argparse.Namespace) -> tuple[State, Built]:
    warm_up = Engine(RuleSet([]))  # zones, currencies, pydantic and rule plans loaded first
    run(warm_up, itertools.islice(_messages(args), 2))
    del warm_up
    gc.collect()
    before = rss()
    engine = Engine(RuleSet([]))
    began = time.perf_counter()
    events = run(engine, _messages(args), progress=True)
    seconds = time.perf_counter() - began
    gc.collect()
    warm = rss()
    cached = sum(cached_bytes(store) for store in (engine.pipeline.store, engine.rollups.store))
    state = engine.state
    del engine
    return state, Built(events, seconds, before, warm, rest_rss(), cached)


def in_fresh_process(state: State) -> Fresh:
    """`fresh_process` in a new interpreter, the state handed over in a temporary file: the
    building process keeps, freed but not returned to the system, what its transient objects
    and caches once took (pymalloc arenas pinned by a few live objects each)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.marshal"
        with path.open("wb") as file:
            marshal.dump((state.stores, state.rollups), file)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(fresh_process, (str(path),))


def fresh_process(path: str) -> Fresh:
    """Load the state's two dicts, as recovery rebuilds them from the changelog, then read every
    key once through StateStores with the default cache (the newest keys stay decoded)."""
    base = rest_rss()
    with Path(path).open("rb") as file:
        stores, rollups = marshal.load(file)
    rest = rest_rss()
    caches = [StateStore(stores), StateStore(rollups)]
    for store in caches:
        for key in store.all_keys():
            store.get(key)
    gc.collect()
    return Fresh(base, rest, rss(), sum(cached_bytes(store) for store in caches))


def rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def rest_rss() -> int:
    """RSS once garbage is collected and glibc has handed its free pages back."""
    gc.collect()
    # Not glibc: nothing handed back, RSS may include freed memory the allocator keeps.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss()


def cached_bytes(store: StateStore) -> int:
    """JSON bytes of the values a StateStore keeps decoded (a private count: bench only)."""
    return store._cached_bytes


def print_memory(built: Built, fresh: Fresh) -> None:
    def line(label: str, value: int, note: str) -> None:
        print(f"  {label:<10}{value / MIB:>9,.0f} MiB  {note}")

    print("\nRSS of the building process (what it keeps includes its allocator's slack):")
    line("before", built.before, "modules loaded, engine warmed up")
    line(
        "warm",
        built.warm,
        f"after the last batch; caches hold {built.cached / MIB:,.0f} MiB of JSON decoded",
    )
    line("kept", built.kept, "engine and caches dropped, gc, malloc_trim")
    print("RSS of a fresh process given the state (as a worker after recovery):")
    line("base", fresh.base, "modules loaded")
    line("at rest", fresh.rest, "state loaded: encoded values, nothing decoded")
    decoded = (fresh.warm - fresh.rest) / max(fresh.cached, 1)
    line(
        "warm",
        fresh.warm,
        f"every key read once; caches hold {fresh.cached / MIB:,.0f} MiB of "
        f"JSON decoded ({decoded:.1f} bytes of RSS per byte of JSON), limit "
        f"{DEFAULT_CACHE_BYTES / MIB:,.0f} MiB",
    )


# ---------------------------------------------------------------- what the state holds


@dataclass
class Keys:
    """State keys of one kind: their number, JSON bytes, and resident bytes."""

    count: int = 0
    encoded: int = 0
    resident: int = 0


@dataclass
class Part:
    """Members of one kind inside values (ad entities, SKU counters of hour values...), as the
    JSON "member":value, of their value: key bytes, counter-name bytes, all bytes."""

    entries: int = 0
    encoded: int = 0
    label: int = 0
    names: int = 0
    sample: str = ""

    def add(self, key: str, value: Any) -> None:
        label = len(encode_value(key))
        self.entries += 1
        self.encoded += label + len(encode_value(value)) + 2  # the colon, the comma
        self.label += label
        if isinstance(value, dict):
            self.names += sum(len(encode_value(name)) + 1 for name in value)
        if not self.sample:
            self.sample = f"{encode_value(key).decode()}:{encode_value(value).decode()}"


@dataclass
class Tally:
    keys: dict[str, Keys] = field(default_factory=dict)
    parts: dict[str, Part] = field(default_factory=dict)
    buckets: dict[str, int] = field(default_factory=dict)
    escapes: int = 0

    @classmethod
    def of(cls, state: State) -> Tally:
        tally = cls()
        for side, table in (("stores", state.stores), ("rollups", state.rollups)):
            share = sys.getsizeof(table) / max(len(table), 1)
            kinds = sorted({key_parts(key)[1] for key in table} | {ALERT}, key=list(KINDS).index)
            for kind in kinds:  # alert keys too, none without rules
                tally.keys[f"{side} {KINDS[kind]}"] = Keys()
            for key, raw in table.items():
                kind = key_parts(key)[1]
                found = tally.keys[f"{side} {KINDS[kind]}"]
                found.count += 1
                found.encoded += len(raw)
                found.resident += round(share) + sys.getsizeof(key) + sys.getsizeof(raw)
                tally.escapes += raw.count(b"\\u00")
                tally._value(kind, decode_value(raw))
        return tally

    def _value(self, kind: str, value: Any) -> None:
        if kind == HOUR:
            self._members("hour: ad entities", value["a"])
            self._members("hour: order entities", value["o"])
            for suffix, counters in value.get("c", {}).items():
                self._bucket(f"hour: {level(suffix)} counters", suffix, counters)
        elif kind == DAY:
            for suffix, counters in value.items():
                self._bucket(f"day: {level(suffix)} counters", suffix, counters)
        elif kind == STOCK:
            self._members("stock: sku entries", value)
        elif kind == ROLLUP:
            for hour, counters in value.items():
                period = "day" if hour == FOLDED else "hour"
                self._bucket(f"rollup day: {period} counters", hour, counters)

    def _members(self, name: str, members: dict[str, Any]) -> None:
        part = self.parts.setdefault(name, Part())
        for key, member in members.items():
            part.add(key, member)

    def _bucket(self, name: str, key: str, counters: dict[str, int]) -> None:
        self.parts.setdefault(name, Part()).add(key, counters)
        self.buckets[name] = self.buckets.get(name, 0) + 1

    @property
    def encoded(self) -> int:
        return sum(k.encoded for k in self.keys.values())

    @property
    def resident(self) -> int:
        return sum(k.resident for k in self.keys.values())

    @property
    def bucket_count(self) -> int:
        return sum(self.buckets.values())

    def print_keys(self) -> None:
        print(f"\n{'state keys':<20}{'keys':>10}{'encoded B':>16}{'B/key':>10}{'resident B':>16}")
        for name, keys in self.keys.items():
            per_key = keys.encoded / keys.count if keys.count else 0.0
            print(
                f"{name:<20}{keys.count:>10,}{keys.encoded:>16,}{per_key:>10,.0f}"
                f"{keys.resident:>16,}"
            )
        count = sum(k.count for k in self.keys.values())
        print(f"{'all':<20}{count:>10,}{self.encoded:>16,}{'':>10}{self.resident:>16,}")

    def print_buckets(self) -> None:
        print(f"\n{'(scope, period) buckets':<32}{'count':>12}")
        for name, count in sorted(self.buckets.items()):
            print(f"{name.replace(' counters', ''):<32}{count:>12,}")
        print(f"{'all':<32}{self.bucket_count:>12,}")

    def print_parts(self) -> None:
        print(
            f"\n{'where the encoded bytes go':<28}{'entries':>11}{'bytes':>14}{'B/entry':>9}"
            f"{'key':>6}{'names':>7}{'rest':>6}"
        )
        for name, part in sorted(self.parts.items(), key=lambda item: -item[1].encoded):
            n = part.entries or 1
            rest = part.encoded - part.label - part.names
            print(
                f"{name:<28}{part.entries:>11,}{part.encoded:>14,}{part.encoded / n:>9,.0f}"
                f"{part.label / n:>6,.0f}{part.names / n:>7,.0f}{rest / n:>6,.0f}"
            )
        framing = self.encoded - sum(p.encoded for p in self.parts.values())
        print(f"{'meta, framing':<28}{'':>11}{framing:>14,}")
        print(
            f"separators escaped as \\u001f/\\u001e: {self.escapes:,} x 6 bytes "
            f"({self.escapes * 6 / max(self.encoded, 1):.0%} of the encoded bytes)"
        )
        print("key: the member's key (scope or entity id); names: the names inside it (counters,")
        print("warehouses); rest: numbers and punctuation. One member of each part:")
        for name, part in sorted(self.parts.items()):
            if part.sample:
                print(f"  {name}: {part.sample[:110]}")


def level(suffix: str) -> str:
    if not suffix:
        return "store"
    if suffix.startswith(SKU_PREFIX):
        return "sku"
    return "campaign" if suffix.startswith(CAMPAIGN_PREFIX) else "other"


def print_aim(tally: Tally, built: Built, fresh: Fresh) -> None:
    buckets = max(tally.bucket_count, 1)
    print(f"\nbytes per (scope, period) bucket, {tally.bucket_count:,} buckets (aim <= {AIM}):")
    for label, size in (
        ("encoded (JSON values)", tally.encoded),
        ("resident (keys and values)", tally.resident),
        ("RSS at rest (fresh process)", fresh.rest - fresh.base),
        ("RSS warm (fresh process)", fresh.warm - fresh.base),
        ("RSS warm (building process)", built.warm - built.before),
        ("RSS kept (building process)", built.kept - built.before),
    ):
        per = size / buckets
        verdict = "met" if per <= AIM else "missed"
        print(f"  {label:<29}{size / MIB:>9,.0f} MiB{per:>9,.0f} B/bucket  {verdict}")


if __name__ == "__main__":
    main()
