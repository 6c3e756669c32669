"""Embedded runtime throughput: simulated events through validation, aggregation and rules.

Prints events/s for three stages measured in the same run, and their ratios, so a noisy shared
machine still gives comparable figures:
  decode   - json + pydantic validation only (the floor any runtime pays)
  pipeline - decode + KPI aggregation + rule evaluation + lifecycle (what `kpiwatch replay` does)

Usage: .venv/bin/python bench/embedded_throughput.py [--hours 240] [--stores 20]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from connectors.simulator import simulate
from rules.load import load_default
from streams.embedded import replay
from streams.events import RawRecord, decode, encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hours", type=int, default=240)
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--skus", type=int, default=10)
    args = parser.parse_args()

    start = datetime(2026, 11, 1, tzinfo=UTC)
    lines = [
        encode(e) for e in simulate(start, hours=args.hours, stores=args.stores, skus=args.skus)
    ]
    print(
        f"{len(lines)} simulated events ({args.stores} stores x {args.skus} SKUs, {args.hours} h)"
    )

    began = time.perf_counter()
    for number, line in enumerate(lines):
        decode(line, str(number))
    decode_rate = len(lines) / (time.perf_counter() - began)

    records = [RawRecord(source=str(n), value=v) for n, v in enumerate(lines)]
    alerts = 0

    def count(_: object) -> None:
        nonlocal alerts
        alerts += 1

    began = time.perf_counter()
    replay(records, load_default(), count)
    pipeline_rate = len(lines) / (time.perf_counter() - began)

    print(f"decode only        {decode_rate:>10,.0f} events/s")
    print(f"full pipeline      {pipeline_rate:>10,.0f} events/s   ({alerts} alerts)")
    print(f"pipeline / decode  {pipeline_rate / decode_rate:>10.2f}")


if __name__ == "__main__":
    main()
