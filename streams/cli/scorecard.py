"""`kpiwatch scorecard`: team scorecards from an event file, in-process."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from rules.errors import KpiwatchError
from rules.load import RuleSet, load_paths
from streams.cli import inputs
from streams.cli.base import Command, IsoDay, examples, one_of
from streams.cli.options import PATH, FileArgs, ReferenceArgs, file_options, reference_options


@click.command(
    "scorecard",
    cls=Command,
    short_help="team scorecards (weighted KPI attainment, red/yellow/green) from an event file",
    help="Aggregate EVENTS_FILE exactly as the worker does and score each team's "
    "card (a `scorecards:` file among --rules) over the period: the team's KPIs (each "
    "store's own local days, money in the reporting currency) against their targets, "
    "attainment capped at 100 per KPI, weighted. Undefined KPIs (ACoS with no ad sales, "
    "attainment without a target) are left out with their weight. Stores belong to teams "
    "through --teams. Example: kpiwatch scorecard events.jsonl --teams teams.csv "
    "--fx fx.csv --rules rules/library --team marketplace-ops --period week",
    epilog=examples(
        "kpiwatch scorecard events.jsonl --teams teams.csv --fx fx.csv --rules rules/library"
        " --team marketplace-ops --period week",
        "kpiwatch scorecard events.jsonl --teams teams.csv --period month --format json",
        "kpiwatch scorecard events.jsonl --teams teams.csv --period day --day 2026-11-30",
    ),
)
@click.argument("events", type=PATH, metavar="EVENTS_FILE")
@click.option("--team", help="only this team's (or person's) card (default: every card)")
@click.option(
    "--period",
    type=click.Choice(["day", "week", "month"]),
    default="week",
    help="day: the local day; week: the last 7 local days; month: the month so far (default: week)",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="table (default) or JSON lines, one card each",
)
@click.option(
    "--rules",
    "rule_paths",
    type=PATH,
    multiple=True,
    metavar="PATH",
    help="rule file or folder holding the scorecard file (repeatable; default: the "
    "shipped library)",
)
@click.option(
    "--at",
    metavar="TIME",
    callback=one_of("--at", "--day"),
    help="end of the period, as for `kpiwatch kpis`; not with --day",
)
@click.option(
    "--day",
    type=IsoDay(),
    callback=one_of("--at", "--day"),
    help="the period's last day; not with --at",
)
@file_options(file_format=False)
@reference_options
def scorecard(
    events: Path,
    team: str | None,
    period: str,
    output: str,
    rule_paths: tuple[Path, ...],
    at: str | None,
    day: date | None,
    files: FileArgs,
    reference: ReferenceArgs,
) -> int:
    from rules.load import load_library
    from streams.embedded import State, reader, replay
    from streams.scorecards import scorecard_rows, scorecard_table

    cards = (load_paths(rule_paths) if rule_paths else load_library()).scorecards
    state, ref = State(), inputs.reference(reference)
    until = inputs.aware(at, "--at") if at else None
    source = inputs.EventFile(events, files)
    try:
        replay(source.records(), RuleSet([]), lambda _: None, source, state, ref, until=until)
    finally:
        source.close()
    view = reader(state, ref)
    try:
        rows = scorecard_rows(view, cards, period, until or view.newest_event(), day=day, team=team)
    except ValueError as exc:
        raise KpiwatchError(str(exc)) from exc
    if output == "json":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print(scorecard_table(rows))
    return 0
