"""`kpiwatch rules check|schema|test`: rule files checked, described and backtested."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rules.alerts import Alert
from rules.load import load_paths
from rules.schema import json_schema
from streams.cli import inputs
from streams.cli.base import Group, examples
from streams.cli.options import PATH, FileArgs, ReferenceArgs, file_options, reference_options


@click.group(
    "rules",
    cls=Group,
    short_help="check rule files, export their JSON Schema",
    epilog=examples(
        "kpiwatch rules check rules/library",
        "kpiwatch rules schema > rules.schema.json",
        "kpiwatch rules test my-rules.yaml --events events.jsonl",
    ),
)
def rules() -> None:
    """Check rule files, export their JSON Schema, backtest them on an event file."""


@rules.command(
    "check",
    short_help="report every problem in rule files, with file and line",
    help="Exit 0 when all files are valid, 2 with every problem listed otherwise.",
    epilog=examples(
        "kpiwatch rules check rules/library",
        "kpiwatch rules check my-rules.yaml sinks.yaml scorecards.yaml",
    ),
)
@click.argument("paths", type=PATH, nargs=-1, required=True, metavar="PATH...")
def check(paths: tuple[Path, ...]) -> int:
    loaded = load_paths(paths)
    cards = f", {len(loaded.scorecards)} scorecard(s)" if loaded.scorecards else ""
    print(f"ok: {len(loaded)} rule(s){cards} in {len(paths)} path(s)")
    return 0


@rules.command(
    "schema",
    short_help="print the JSON Schema of rule files",
    help="Print the JSON Schema of rule files (or of scorecard files), for editors to "
    "complete and check them.",
    epilog=examples(
        "kpiwatch rules schema > rules.schema.json",
        "kpiwatch rules schema --scorecards > scorecards.schema.json",
    ),
)
@click.option("--scorecards", is_flag=True, help="the JSON Schema of scorecard files instead")
def schema(scorecards: bool) -> int:
    from rules.scorecard import scorecard_json_schema

    print(json.dumps(scorecard_json_schema() if scorecards else json_schema(), indent=2))
    return 0


@rules.command(
    "test",
    short_help="backtest rule files on an event file (JSON lines or CSV)",
    help="Replay EVENTS_FILE through the rules in-process, exactly as the worker "
    "would, and print every alert transition with its event time (muted ones marked) in "
    "time order, then per rule how often it fired, was muted and resolved.",
    epilog=examples(
        "kpiwatch rules test my-rules.yaml --events events.jsonl",
        "kpiwatch rules test rules/library --events orders.csv --kind order --fx fx.csv",
    ),
)
@click.argument("paths", type=PATH, nargs=-1, required=True, metavar="PATH...")
@click.option("--events", type=PATH, required=True, metavar="EVENTS_FILE")
@file_options()
@reference_options
def backtest(
    paths: tuple[Path, ...], events: Path, files: FileArgs, reference: ReferenceArgs
) -> int:
    from streams.embedded import replay

    loaded = load_paths(paths)
    counts = {rule.name: {"fired": 0, "muted": 0, "resolved": 0} for rule in loaded.rules}
    transitions: list[Alert] = []

    def record(alert: Alert) -> None:
        outcome = "muted" if alert.muted else "fired" if alert.status == "firing" else "resolved"
        counts[alert.rule][outcome] += 1
        transitions.append(alert)

    source = inputs.EventFile(events, files)
    try:
        report = replay(
            source.records(), loaded, record, source, reference=inputs.reference(reference)
        )
    finally:
        source.close()
    # The engine reports a file's transitions as it reads them, store by store: a person reads
    # a backtest as a timeline. Stable, so transitions at one instant keep their order.
    for alert in sorted(transitions, key=lambda a: a.at):
        print(transition_line(alert))
    print(f"\n{report.events} events, {source.count} rejected; per rule:")
    width = max((len(name) for name in counts), default=0)
    for name, n in counts.items():
        print(
            f"  {name:<{width}}  fired {n['fired']}  muted {n['muted']}  resolved {n['resolved']}"
        )
    return 0


def transition_line(alert: Alert) -> str:
    """One backtest line: event time, transition, and what a person would have read."""
    status = f"{alert.status.upper()}{' (muted)' if alert.muted else ''}"
    return f"{alert.at.isoformat()}  {status:<16} {alert.summary}"
