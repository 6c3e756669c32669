"""`kpiwatch replay`: rules over an event file, in-process, alerts as JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rules.alerts import Alert
from sinks.console import alert_json
from streams.cli import inputs
from streams.cli.base import Command, examples, paths
from streams.cli.options import PATH, FileArgs, ReferenceArgs, file_options, reference_options


@click.command(
    "replay",
    cls=Command,
    short_help="run rules over an event file (JSON lines or CSV), in-process",
    help="Validate, aggregate and evaluate every event of EVENTS_FILE in file order, "
    "exactly as the worker does, and print each alert as one JSON line. "
    "Rejected lines are reported on stderr with file:line and reason.",
    epilog=examples(
        "kpiwatch replay events.jsonl",
        "kpiwatch replay orders.csv --kind order --timezone Asia/Tokyo --rejects rejects.csv",
        "kpiwatch replay events.jsonl --rules rules/library --fx fx.csv --dead-letter bad.jsonl",
    ),
)
@click.argument("events", type=PATH, metavar="EVENTS_FILE")
@file_options()
@click.option(
    "--rules",
    "rule_paths",
    type=PATH,
    multiple=True,
    metavar="PATH",
    help="rule file or folder (repeatable; default: the shipped rules)",
)
@reference_options
@click.option(
    "--dead-letter",
    type=PATH,
    metavar="FILE",
    help="also write rejected lines to FILE as JSON with their reason",
)
def replay(
    events: Path,
    files: FileArgs,
    rule_paths: tuple[Path, ...],
    reference: ReferenceArgs,
    dead_letter: Path | None,
) -> int:
    from streams.embedded import replay as run

    rules = inputs.rules(paths(rule_paths))
    source = inputs.EventFile(events, files, dead_letter)

    def emit(alert: Alert) -> None:
        print(alert_json(alert), flush=False)

    try:
        report = run(source.records(), rules, emit, source, reference=inputs.reference(reference))
    finally:
        source.close()
    sys.stdout.flush()
    print(
        f"kpiwatch replay: {report.events} events, {source.count} rejected, {report.alerts} alerts",
        file=sys.stderr,
    )
    return 0
