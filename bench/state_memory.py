"""Resident memory of the KPI state per tracked key, at catalogue scale (default 100k SKUs, 1 day).

Builds the in-process state (streams.kpi.State over plain dicts, through streams.kpi.apply_event,
the function both runtimes call) from one day of hourly ad reports per SKU and an inventory
snapshot per SKU every 4 h (the simulator's cadence), then prints:
  - resident memory (RSS, /proc/self/statm) before and after, divided by the number of keys in
    seen + ledger + buckets + inventory, and by the number of (scope, window) buckets alone;
  - per table: keys and deep bytes per key (sys.getsizeof over keys and values, each object
    counted once), which says where the memory goes.
Events are made one at a time and dropped after they are applied, so RSS grows by state only.

The Kafka runtime's Faust tables with store="memory://" hold these same dicts (faust's memory
Store keeps the Python values), plus per key an entry in the store's `_key_partition` dict and,
while a key is written, the changelog message in the producer buffer; recovery rebuilds the
same dicts by reading the changelog topics, so expect the worker's RSS per key to be at least
the figure printed here.

Usage: .venv/bin/python bench/state_memory.py [--skus 100000] [--skus-per-store 100] [--hours 24]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.simulator import MARKETS
from streams.events import AdSpendEvent, Event, InventoryEvent, Money
from streams.kpi import State, apply_event
from streams.reference import Reference

TABLES = ("seen", "ledger", "buckets", "inventory")
START = datetime(2026, 1, 5, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--skus-per-store", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24, help="hours of events (default 24)")
    parser.add_argument("--inventory-every", type=int, default=4, help="hours between snapshots")
    args = parser.parse_args()

    apply_all(State(), _events(args, limit=1000))  # warm caches (zones, currencies) first
    gc.collect()
    before = rss()
    state = State()
    began = time.perf_counter()
    events = apply_all(state, _events(args), progress=True)
    seconds = time.perf_counter() - began
    gc.collect()
    after = rss()
    report(args, state, events, seconds, before, after)


def _events(args: argparse.Namespace, limit: int | None = None) -> Iterator[Event]:
    """Hour by hour: an ad report per SKU, and every few hours an inventory snapshot per SKU."""
    stores = -(-args.skus // args.skus_per_store)
    templates = [_template(store) for store in range(stores)]
    made = 0
    for hour in range(args.hours):
        start = START + timedelta(hours=hour)
        snapshot = hour % args.inventory_every == args.inventory_every - 1
        for number in range(args.skus):
            store = number // args.skus_per_store
            template = templates[store]
            sku = f"SKU-{store:05d}-{number % args.skus_per_store:04d}"
            made += 1
            yield _ad(template, sku, start, made)
            if snapshot:
                made += 1
                yield _inventory(template, sku, start, made)
            if limit is not None and made >= limit:
                return


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


def apply_all(state: State, events: Iterator[Event], progress: bool = False) -> int:
    count = 0
    last = time.perf_counter()
    reference = Reference()
    for event in events:
        apply_event(state, reference, event)
        count += 1
        if progress and time.perf_counter() - last >= 10:
            last = time.perf_counter()
            print(f"applied {count:>10,} events, RSS {rss() / 2**20:,.0f} MiB", flush=True)
    return count


def rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def deep_size(value: Any, seen: set[int]) -> int:
    """Bytes of `value` and everything it holds, skipping objects already counted."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return total


def report(
    args: argparse.Namespace, state: State, events: int, seconds: float, before: int, after: int
) -> None:
    keys = {name: len(getattr(state, name)) for name in TABLES}
    total_keys = sum(keys.values())
    grown = after - before
    print()
    print(
        f"{args.skus:,} SKUs ({args.skus_per_store} per store), {args.hours} h: {events:,} events "
        f"applied in {seconds:.0f} s ({events / seconds:,.0f} events/s)"
    )
    print(f"RSS {before / 2**20:,.0f} MiB -> {after / 2**20:,.0f} MiB: +{grown / 2**20:,.0f} MiB")
    print(f"{'table':<12}{'keys':>12}{'deep bytes':>16}{'bytes/key':>12}")
    counted: set[int] = set()
    for name in TABLES:
        table = getattr(state, name)
        size = deep_size(table, counted)
        per_key = size / keys[name] if keys[name] else 0.0
        print(f"{name:<12}{keys[name]:>12,}{size:>16,}{per_key:>12,.0f}")
    per_key = grown / total_keys if total_keys else 0.0
    print(f"{'all keys':<12}{total_keys:>12,}{'RSS/key':>16}{per_key:>12,.0f}")
    per_bucket = grown / keys["buckets"] if keys["buckets"] else 0.0
    print(f"{'per bucket':<12}{keys['buckets']:>12,}{'RSS/bucket':>16}{per_bucket:>12,.0f}")


if __name__ == "__main__":
    main()
