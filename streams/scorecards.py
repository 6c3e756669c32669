"""Team scorecards over the engine's own KPI values: `kpiwatch scorecard` (embedded) and the
worker's `/scorecards` page and gauges both answer from here.

The values are the team rollups `streams.query.kpi_rows` reads (each store's local days, money
in the reporting currency); `rules.scorecard.score` turns them into a score. No KPI is computed
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.kpis import CATALOG, TEAM
from rules.scorecard import PERIOD_WINDOWS, Score, Scorecard, score
from streams.query import StateReader, kpi_rows


def scorecard_rows(
    reader: StateReader,
    cards: Mapping[str, Scorecard],
    period: str,
    at: str | datetime | None,
    *,
    day: date | None = None,
    team: str | None = None,
    held_only: bool = False,
) -> list[dict[str, Any]]:
    """One row per card (or only `team`'s): its score over the period ending at `at` (or with
    the local `day`), and each KPI's value, target, attainment and band. `held_only`: only the
    teams this state holds (a worker holds some rollup partitions; another one the rest)."""
    if period not in PERIOD_WINDOWS:
        raise ValueError(f"period {period!r}: use one of {', '.join(PERIOD_WINDOWS)}")
    if team is not None and team not in cards:
        known = ", ".join(sorted(cards)) or "none: add a scorecards: file next to the rules"
        raise ValueError(f"no scorecard for team {team!r} (cards: {known})")
    window = PERIOD_WINDOWS[period]
    found = {row["scope"]["team"]: row for row in kpi_rows(reader, "team", window, at, day=day)}
    rows = []
    for name in sorted(cards):
        if (team is None or name == team) and (name in found or not held_only):
            rows.append(_row(cards[name], period, found.get(name)))
    return rows


def _row(card: Scorecard, period: str, kpis: Mapping[str, Any] | None) -> dict[str, Any]:
    values = kpis["values"] if kpis is not None else {}
    numbers = {k: Decimal(v) for k, v in values.items() if v is not None}
    result = score(card, period, numbers, _notes(card, period, kpis))
    return {
        "team": card.team,
        "period": period,
        "window": PERIOD_WINDOWS[period],
        "days": _days(kpis),
        "window_start": kpis["window_start"] if kpis else None,
        "window_end": kpis["window_end"] if kpis else None,
        "currency": kpis["currency"] if kpis else None,
        **score_json(result),
    }


def _days(kpis: Mapping[str, Any] | None) -> str | None:
    """The local days of the period: a team's day sums its stores' own local days, so its
    window in UTC only names them."""
    if not kpis or not kpis["window_start"] or not kpis["window_end"]:
        return None
    first = datetime.fromisoformat(kpis["window_start"]).date()
    last = (datetime.fromisoformat(kpis["window_end"]) - timedelta(microseconds=1)).date()
    return first.isoformat() if first == last else f"{first}..{last}"


def _notes(card: Scorecard, period: str, kpis: Mapping[str, Any] | None) -> dict[str, str]:
    """Why a KPI has no value, in words a team lead can act on."""
    notes = {}
    for name in card.names():
        spec = CATALOG[name]
        if PERIOD_WINDOWS[period] not in spec.windows or TEAM not in spec.levels:
            notes[name] = f"{name} is kept over {' or '.join(spec.windows)} only, not per {period}"
        elif kpis is None:
            notes[name] = "no events of the team's stores in this period"
        else:
            notes[name] = _UNDEFINED.get(name, "undefined: nothing to divide by in this period")
    return notes


_MONEY = "undefined: an FX rate to the reporting currency is missing"
_UNDEFINED: Mapping[str, str] = {
    **{n: _MONEY for n, s in CATALOG.items() if s.unit == "money" and n not in ("aov", "cpc")},
    "acos": "undefined: no ad sales in this period",
    "roas": "undefined: no ad spend in this period",
    "tacos": "undefined: no sales in this period (or an FX rate is missing)",
    "target_attainment": "undefined: no monthly target for the team (or its FX rate)",
    "pace": "undefined: no monthly target for the team (or its FX rate)",
    "gross_margin": "undefined: no sales, or a unit cost or FX rate is missing",
}


def score_json(result: Score) -> dict[str, Any]:
    """A score as JSON: numbers as strings (no digit lost), undefined as null."""
    return {
        "score": _text(result.score),
        "band": result.band,
        "kpis": [
            {
                "kpi": k.kpi,
                "value": _text(k.value),
                "target": _text(k.target),
                "weight": _text(k.weight),
                "direction": k.direction,
                "attainment": _text(k.attainment),
                "band": k.band,
                **({"note": k.note} if k.note else {}),
            }
            for k in result.kpis
        ],
    }


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def scorecard_table(rows: list[dict[str, Any]]) -> str:
    """The cards as a person reads them in a terminal."""
    out = []
    for row in rows:
        span = f"local days {row['days']}" if row["days"] else "no data"
        score_text = row["score"] if row["score"] is not None else "no score"
        band = (row["band"] or "").upper()
        out.append(f"{row['team']}  {row['period']} ({span})  score {score_text} {band}".rstrip())
        header = ("kpi", "value", "target", "weight", "direction", "attainment", "band")
        lines = [header]
        for k in row["kpis"]:
            lines.append(
                (
                    k["kpi"],
                    k["value"] if k["value"] is not None else "-",
                    k["target"],
                    k["weight"],
                    k["direction"],
                    k["attainment"] if k["attainment"] is not None else "-",
                    k["band"] or k.get("note", ""),
                )
            )
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
        for line in lines:
            cells = [f"{c!s:<{w}}" for c, w in zip(line[:-1], widths, strict=True)]
            out.append("  " + "  ".join(cells) + "  " + str(line[-1]))
        out.append("")
    return "\n".join(out).rstrip("\n")
