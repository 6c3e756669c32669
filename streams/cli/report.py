"""`kpiwatch report`: a team's day/week/month report from an event file, in-process."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

import click

from rules.alerts import Alert
from rules.errors import KpiwatchError
from rules.load import load_paths
from streams.cli import inputs
from streams.cli.base import Command, IsoDay, examples
from streams.cli.options import PATH, FileArgs, ReferenceArgs, file_options, reference_options


@click.command(
    "report",
    cls=Command,
    short_help="a team's day/week/month report (KPIs, scorecard, movers, alerts, charts)",
    help="Aggregate EVENTS_FILE and run the rules exactly as the worker does, then "
    "write the team's report over the period ending with --day (default: the newest "
    "event's day): its KPIs against target and the previous period, its scorecard, the "
    "SKUs and campaigns that moved most, the alerts of the period (fired, resolved, time "
    "to resolve) and charts (GMV per day vs target, ACoS). Formats: md (Markdown; with "
    "--out, the charts are PNG files beside it), html (charts inline), xlsx (one sheet "
    "per section, real numbers), pdf. Example: kpiwatch report events.jsonl --teams "
    "teams.csv --fx fx.csv --team marketplace-ops --period week --out week.xlsx",
    epilog=examples(
        "kpiwatch report events.jsonl --teams teams.csv --fx fx.csv --team marketplace-ops"
        " --period week --out week.xlsx",
        "kpiwatch report events.jsonl --teams teams.csv --team marketplace-ops --period day"
        " --day 2026-11-30",
        "kpiwatch report events.jsonl --teams teams.csv --team marketplace-ops --period month"
        " --format html --out month.html",
    ),
)
@click.argument("events", type=PATH, metavar="EVENTS_FILE")
@click.option("--team", required=True, help="the team (or person) of the teams file")
@click.option(
    "--period",
    type=click.Choice(["day", "week", "month"]),
    default="week",
    help="day, the 7 days up to --day, or the month up to it (default week)",
)
@click.option("--day", type=IsoDay(), help="the period's last day")
@click.option(
    "--format",
    "output",
    type=click.Choice(["md", "html", "xlsx", "pdf"]),
    help="default: by --out's suffix, else md",
)
@click.option("--out", type=PATH, metavar="FILE", help="default: standard output")
@click.option(
    "--rules",
    "rule_paths",
    type=PATH,
    multiple=True,
    metavar="PATH",
    help="rule files or folders, scorecards among them (default: the shipped library)",
)
@file_options(file_format=False)
@reference_options
def report(
    events: Path,
    team: str,
    period: str,
    day: date | None,
    output: str | None,
    out: Path | None,
    rule_paths: tuple[Path, ...],
    files: FileArgs,
    reference: ReferenceArgs,
) -> int:
    from rules.load import load_library
    from streams.embedded import State, reader, replay
    from streams.reports.build import build_report
    from streams.reports.output import format_for, render, require

    try:
        require()
    except ImportError as exc:
        raise KpiwatchError(str(exc)) from exc
    fmt = format_for(out, output)
    if out is None and fmt in ("xlsx", "pdf"):
        raise KpiwatchError(f"--format {fmt} is a binary file: give --out FILE")
    rules = load_paths(rule_paths) if rule_paths else load_library()
    state, ref = State(), inputs.reference(reference)
    alerts: list[Alert] = []
    source = inputs.EventFile(events, files)
    try:
        replay(source.records(), rules, alerts.append, source, state, ref)
    finally:
        source.close()
    view = reader(state, ref)
    newest = view.newest_event()
    last = day or (newest.date() if newest is not None else datetime.now(UTC).date())
    try:
        built = build_report(view, rules.scorecards, alerts, team, period, last)
    except ValueError as exc:
        raise KpiwatchError(str(exc)) from exc
    for path, data in render(built, fmt, out).items():
        if path is None:
            sys.stdout.buffer.write(data)
        else:
            path.write_bytes(data)
            print(f"kpiwatch report: wrote {path}", file=sys.stderr)
    return 0
