"""Rule engine scale: embedded pipeline throughput with 10, 1,000 and 10,000 rules loaded.

Large rule sets in practice are many per-store or per-marketplace variants of a few ideas
(each store its own ACoS target), so the generated rules cycle through KPIs, scope levels and
store filters; only a few of them name a store the simulator has. Each size runs on the same
events in the same process, and the ratios to the 10-rule run are printed, so a noisy shared
machine still gives comparable figures.

Usage: .venv/bin/python bench/rules_scale.py [--hours 72] [--stores 10]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from connectors.simulator import simulate
from rules.load import RuleSet, load_text
from streams.embedded import replay
from streams.events import RawRecord, encode

SIZES = (10, 1_000, 10_000)
# (kpi, by, threshold) the generated rules cycle through.
KINDS = (
    ("acos", "[store, sku]", "> 35%"),
    ("acos", "[store, campaign]", "> 40%"),
    ("gmv", "[store]", "> 1000000 USD"),
    ("orders", "[store, sku]", "> 100000"),
    ("cancel_rate", "[store]", "> 50%"),
    ("available", "[store, sku]", "< 1"),
    ("gmv", "[marketplace]", "> 100000000 USD"),
)


def rule_text(count: int, stores: list[str]) -> str:
    lines = ["rules:"]
    for n in range(count):
        kpi, by, threshold = KINDS[n % len(KINDS)]
        lines += [f"  - name: r{n}", f"    kpi: {kpi}", f"    by: {by}"]
        lines += [f'    thresholds: {{warning: "{threshold}"}}']
        # One rule in 50 watches a store (or marketplace) that exists, the rest other ones.
        real = n % 50 == 0
        if "store" in by:
            store = stores[n % len(stores)] if real else f"other-{n}"
            lines += [f"    filters: {{store: {store}}}"]
        else:
            lines += [f"    filters: {{marketplace: {'US' if real else f'X{n}'}}}"]
    return "\n".join(lines) + "\n"


def run(records: list[RawRecord], rules: RuleSet) -> tuple[float, int]:
    alerts = 0

    def count(_: object) -> None:
        nonlocal alerts
        alerts += 1

    began = time.perf_counter()
    replay(records, rules, count)
    return len(records) / (time.perf_counter() - began), alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--skus", type=int, default=10)
    args = parser.parse_args()

    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = list(simulate(start, hours=args.hours, stores=args.stores, skus=args.skus))
    stores = sorted({e.store_id for e in events})
    records = [RawRecord(source=str(n), value=encode(e)) for n, e in enumerate(events)]
    print(f"{len(records)} simulated events ({args.stores} stores x {args.skus} SKUs)")

    baseline = 0.0
    for size in SIZES:
        began = time.perf_counter()
        rules = RuleSet(load_text(rule_text(size, stores), f"<{size} rules>"))
        loaded = time.perf_counter() - began
        rate, alerts = run(records, rules)
        baseline = baseline or rate
        print(
            f"{size:>6,} rules  load {loaded:6.2f} s  {rate:>9,.0f} events/s  "
            f"x{rate / baseline:.2f} of 10 rules  ({alerts} alerts)"
        )


if __name__ == "__main__":
    main()
