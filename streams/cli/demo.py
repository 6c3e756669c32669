"""`kpiwatch demo`: the embedded engine on simulated traffic, alerts on stdout."""

from __future__ import annotations

import sys

import click

from sinks.console import alert_json, alert_text
from streams.cli import inputs
from streams.cli.base import Command, examples
from streams.cli.options import SimulationArgs, simulation_options
from streams.cli.simulate import simulated


@click.command(
    "demo",
    cls=Command,
    short_help="run the embedded engine on simulated traffic and show the alerts",
    help="Simulate a few stores (Amazon US/JP, Shopee MY, ...) with a stockout and an "
    "ACoS spike in them (and random incidents at --incident-rate), run the default rules "
    "over it in-process (no Kafka, no Redis) and print the alerts.",
    epilog=examples(
        "kpiwatch demo",
        "kpiwatch demo --stores 5 --hours 72 --incident-rate 0.2",
        "kpiwatch -v demo --json > alerts.jsonl",
    ),
)
@simulation_options
@click.option("--json", "as_json", is_flag=True, help="print alerts as JSON lines")
def demo(simulation: SimulationArgs, as_json: bool) -> int:
    from streams.embedded import replay
    from streams.events import RawRecord

    print(
        f"kpiwatch demo: {simulation.stores} simulated stores over {simulation.hours} h, "
        "default rules, embedded runtime",
        file=sys.stderr,
    )
    lines = simulated(simulation)
    records = (RawRecord(source=f"simulator:{n}", value=v) for n, v in enumerate(lines, 1))
    emit = alert_json if as_json else alert_text
    report = replay(records, inputs.rules(None), lambda alert: print(emit(alert), flush=True))
    print(f"kpiwatch demo: {report.events} events, {report.alerts} alerts", file=sys.stderr)
    return 0
