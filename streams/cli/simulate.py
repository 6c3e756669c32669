"""`kpiwatch simulate`: the simulator's events as JSON lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from rules.errors import KpiwatchError
from streams.cli.base import Command, examples
from streams.cli.options import PATH, SimulationArgs, simulation_options


@click.command(
    "simulate",
    cls=Command,
    short_help="print simulated events as JSON lines",
    help="Print the simulator's events (the same traffic `kpiwatch demo` uses) as "
    "JSON lines, for `kpiwatch replay` or `kpiwatch produce`.",
    epilog=examples(
        "kpiwatch simulate --stores 5 --hours 72 > events.jsonl",
        "kpiwatch simulate --start 2026-11-20T00:00:00+00:00 --incidents incidents.jsonl"
        " > events.jsonl",
        "kpiwatch simulate --seed 1 > events.jsonl && kpiwatch replay events.jsonl",
    ),
)
@simulation_options
@click.option(
    "--incidents",
    type=PATH,
    metavar="FILE",
    help="write the injected incidents to FILE as JSON lines (kind, store_id, sku, "
    "campaign_id, start, end)",
)
def simulate(simulation: SimulationArgs, incidents: Path | None) -> int:
    out = sys.stdout.buffer
    for line in simulated(simulation, incidents):
        out.write(line + b"\n")
    out.flush()
    return 0


def simulated(args: SimulationArgs, incidents: Path | None = None) -> Iterator[bytes]:
    """The simulator's events as JSON lines, made as they are read (memory stays flat)."""
    from connectors.simulator import DEFAULT_INCIDENT_RATE, Incident
    from connectors.simulator import simulate as simulator
    from streams.events import encode

    start = args.start or (datetime.now(UTC) - timedelta(hours=args.hours)).replace(
        minute=0, second=0, microsecond=0
    )
    if start.tzinfo is None:
        raise KpiwatchError("--start needs a time zone, e.g. 2026-11-20T00:00:00+00:00")
    rate = DEFAULT_INCIDENT_RATE if args.incident_rate is None else args.incident_rate
    if rate < 0:
        raise KpiwatchError("--incident-rate must be 0 or more")
    told_file = incidents.open("w", encoding="utf-8") if incidents else None

    def told(incident: Incident) -> None:
        if told_file is not None:
            told_file.write(json.dumps(incident.to_json()) + "\n")

    events = simulator(
        start,
        hours=args.hours,
        stores=args.stores,
        skus=args.skus,
        seed=args.seed,
        incident_rate=rate,
        on_incident=told,
    )
    try:
        for event in events:
            yield encode(event)
    finally:
        if told_file is not None:
            told_file.close()
