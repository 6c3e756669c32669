"""The report's sections as typed tables: every format (Markdown, HTML, Excel, PDF) renders
these, so the four say the same thing. A cell keeps its number and its kind; text is made
only when a format needs text (Excel keeps the number and gets a number format)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from streams.reports.build import Report

Kind = Literal["text", "money", "ratio", "count", "number", "change", "datetime", "day", "duration"]
Value = str | Decimal | datetime | date | timedelta | None


@dataclass(frozen=True)
class Cell:
    value: Value
    kind: Kind = "text"
    # For a change: whether a fall is the good news (ACoS, cancellations), for its colour.
    lower_is_better: bool = False


# KPIs whose fall is good news.
LOWER_IS_BETTER = frozenset({"acos", "tacos", "cancel_rate", "return_rate", "cpc"})


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: list[list[Cell]]
    note: str = ""


_UNIT_KIND: dict[str, Kind] = {"money": "money", "ratio": "ratio", "count": "count"}


def kpi_table(report: Report) -> Table:
    rows = []
    for line in report.kpis:
        kind = _kind(line.kpi)
        rows.append(
            [
                Cell(line.kpi),
                Cell(line.value, kind),
                Cell(line.previous, kind),
                Cell(line.change, "change", line.kpi in LOWER_IS_BETTER),
                Cell(line.target, kind),
                Cell(None if line.attainment is None else line.attainment / 100, "ratio"),
            ]
        )
    note = f"money in {report.currency}; previous: the {report.period} before"
    headers = ("KPI", "value", "previous", "change", "target", "attainment")
    return Table("KPIs", headers, rows, note)


def scorecard_table(report: Report) -> Table:
    card = report.scorecard
    if card is None:
        return Table("Scorecard", ("KPI",), [], f"no scorecard for {report.team}")
    rows = []
    for k in card["kpis"]:
        kind = _kind(k["kpi"])
        attainment = _dec(k["attainment"])
        rows.append(
            [
                Cell(k["kpi"]),
                Cell(_dec(k["value"]), kind),
                Cell(_dec(k["target"]), kind),
                Cell(_dec(k["weight"]), "number"),
                Cell(k["direction"]),
                Cell(None if attainment is None else attainment / 100, "ratio"),
                Cell(k["band"] or k.get("note", "")),
            ]
        )
    score = card["score"] if card["score"] is not None else "no score"
    band = f" ({card['band'].upper()})" if card["band"] else ""
    headers = ("KPI", "value", "target", "weight", "direction", "attainment", "band")
    return Table("Scorecard", headers, rows, f"score {score}{band}")


def mover_tables(report: Report) -> list[Table]:
    tables = []
    for kind, title in (
        ("sku", "Top movers: SKUs (GMV)"),
        ("campaign", "Top movers: campaigns (ad sales)"),
    ):
        rows = [
            [
                Cell(m.store),
                Cell(m.name),
                Cell(m.value, "money"),
                Cell(m.previous, "money"),
                Cell(m.delta, "money"),
                Cell((m.delta / m.previous) if m.previous else None, "change"),
            ]
            for m in report.movers
            if m.kind == kind
        ]
        headers = (
            "store",
            "SKU" if kind == "sku" else "campaign",
            "now",
            "before",
            "delta",
            "change",
        )
        tables.append(Table(title, headers, rows, "up first, then down"))
    return tables


def alert_table(report: Report) -> Table:
    rows = [
        [
            Cell(a.rule),
            Cell(a.severity),
            Cell(a.scope),
            Cell(a.fired_at, "datetime"),
            Cell(a.resolved_at, "datetime") if a.resolved_at else Cell("still firing"),
            Cell(a.time_to_resolve, "duration"),
        ]
        for a in report.alerts
    ]
    headers = ("rule", "severity", "scope", "fired (UTC)", "resolved (UTC)", "time to resolve")
    return Table("Alerts", headers, rows, alert_summary(report))


def alert_summary(report: Report) -> str:
    fired = len(report.alerts)
    durations = [a.time_to_resolve for a in report.alerts if a.time_to_resolve is not None]
    text = f"{fired} fired, {len(durations)} resolved"
    if durations:
        median = statistics.median(d.total_seconds() for d in durations)
        text += f", median time to resolve {format_duration(timedelta(seconds=median))}"
    return text


def daily_table(report: Report) -> Table:
    rows = [
        [Cell(p.day, "day"), Cell(p.gmv, "money"), Cell(p.target, "money"), Cell(p.acos, "ratio")]
        for p in report.daily
    ]
    return Table(
        "Per day", ("day", "GMV", "GMV target", "ACoS"), rows, f"money in {report.currency}"
    )


def tables(report: Report) -> list[Table]:
    return [kpi_table(report), scorecard_table(report), *mover_tables(report),
            alert_table(report), daily_table(report)]  # fmt: skip


def _kind(kpi: str) -> Kind:
    from rules.kpis import CATALOG

    if kpi == "roas":  # a multiple (4.2x), though kept as a ratio
        return "number"
    return _UNIT_KIND.get(CATALOG[kpi].unit, "number")


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def text(cell: Cell) -> str:
    """A cell as a person reads it: 1,234.50; 14.4%; +3.2%; 2026-11-30 09:00 UTC; 2h 05m."""
    value = cell.value
    if value is None:
        return "-"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if cell.kind == "money":
        return f"{value:,.2f}"
    if cell.kind == "ratio":
        return f"{value * 100:.1f}%"
    if cell.kind == "change":
        return f"{value * 100:+.1f}%"
    if cell.kind == "count":
        return f"{value:,.0f}"
    exact = value.normalize()
    places = exact.as_tuple().exponent
    return f"{exact:f}" if isinstance(places, int) and places >= -2 else f"{value:,.2f}"
