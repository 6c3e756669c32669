"""`kpiwatch kpis`: KPI values per scope from an event file, in-process."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path

import click

from rules.errors import KpiwatchError
from rules.load import RuleSet
from streams.cli import inputs
from streams.cli.base import Command, IsoDay, examples, one_of
from streams.cli.options import PATH, FileArgs, ReferenceArgs, file_options, reference_options


@click.command(
    "kpis",
    cls=Command,
    short_help="print KPI values per scope from an event file (JSON lines or CSV), in-process",
    help="Aggregate EVENTS_FILE exactly as the worker does and print, for every "
    "scope of the --by level, the KPI values over --window ending at --at (or with the "
    "local --day), as JSON lines. Example: kpiwatch kpis events.jsonl --by store "
    "--window 1d --day 2026-11-30 --fx fx.csv",
    epilog=examples(
        "kpiwatch kpis events.jsonl --by store --window 1d --day 2026-11-30 --fx fx.csv",
        "kpiwatch kpis events.jsonl --by store,sku --window 7d",
        "kpiwatch kpis events.jsonl --window 24h --at 2026-11-30T12:00:00+09:00",
    ),
)
@click.argument("events", type=PATH, metavar="EVENTS_FILE")
@file_options()
@click.option(
    "--by",
    default="store",
    help="scope level: store | store,sku | store,campaign | marketplace | "
    "platform | team (default store)",
)
@click.option("--window", default="1d", help="1h, 24h, 1d, 7d, 28d or mtd (default 1d)")
@click.option(
    "--at",
    metavar="TIME",
    callback=one_of("--at", "--day"),
    help="end of the window, ISO 8601 with zone: events after it are not counted, the "
    "window is the buckets (local hours or days) up to it (default: the newest event); "
    "not with --day",
)
@click.option(
    "--day",
    type=IsoDay(),
    callback=one_of("--at", "--day"),
    help="the window ending with this local day, in each store's own time zone "
    "(--window 1d: that whole day; 7d: it and the 6 days before); not with --at",
)
@reference_options
def kpis(
    events: Path,
    files: FileArgs,
    by: str,
    window: str,
    at: str | None,
    day: date | None,
    reference: ReferenceArgs,
) -> int:
    from streams.embedded import State, reader, replay
    from streams.query import kpi_rows

    state, ref = State(), inputs.reference(reference)
    until = inputs.aware(at, "--at") if at else None
    source = inputs.EventFile(events, files)
    try:
        report = replay(
            source.records(), RuleSet([]), lambda _: None, source, state, ref, until=until
        )
    finally:
        source.close()
    view = reader(state, ref)
    try:
        rows = kpi_rows(view, by, window, until or view.newest_event(), day=day)
    except ValueError as exc:
        raise KpiwatchError(str(exc)) from exc
    for row in rows:
        if until is not None and row["window_end"] is not None:
            # Nothing after --at was counted: the window ends there, not with its bucket.
            end = datetime.fromisoformat(row["window_end"])
            row["window_end"] = min(end, until.astimezone(end.tzinfo)).isoformat()
        print(json.dumps(row, ensure_ascii=False))
    later = f", {report.later} after --at left out" if until is not None else ""
    print(
        f"kpiwatch kpis: {report.events} events, {source.count} rejected{later}, "
        f"{len(rows)} scopes",
        file=sys.stderr,
    )
    return 0
