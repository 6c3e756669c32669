"""What a report says, as plain data: read from the engine's state and the alerts of a run.

The period is whole local days ending with `day`: the day, the 7 days up to it, or the month
up to it. The previous period is the one before it of the same length (the day before, the
week before, the previous month up to the same day of the month).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.alerts import Alert
from rules.kpis import CATALOG, Unit
from rules.scorecard import PERIOD_WINDOWS, Scorecard
from streams.query import StateReader, kpi_rows
from streams.scorecards import scorecard_rows

PERIODS = tuple(PERIOD_WINDOWS)
# The KPIs a team lead reads first, in this order; a card's own KPIs come after them.
HEADLINE = (
    "gmv", "orders", "units", "aov", "cancel_rate", "return_rate", "ad_spend", "ad_sales",
    "acos", "roas", "tacos", "target_attainment", "pace",
)  # fmt: skip
MOVERS = 5  # rows up and down per kind


@dataclass(frozen=True)
class KpiLine:
    kpi: str
    unit: Unit
    value: Decimal | None
    previous: Decimal | None
    target: Decimal | None
    attainment: Decimal | None

    @property
    def change(self) -> Decimal | None:
        """Relative change against the previous period (0.1 = +10%); None without a base."""
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / abs(self.previous)


@dataclass(frozen=True)
class Mover:
    kind: str  # "sku" or "campaign"
    store: str
    name: str
    kpi: str
    value: Decimal
    previous: Decimal

    @property
    def delta(self) -> Decimal:
        return self.value - self.previous


@dataclass(frozen=True)
class AlertLine:
    rule: str
    severity: str
    scope: str
    summary: str
    fired_at: datetime | None
    resolved_at: datetime | None

    @property
    def time_to_resolve(self) -> timedelta | None:
        if self.fired_at is None or self.resolved_at is None:
            return None
        return self.resolved_at - self.fired_at


@dataclass(frozen=True)
class DayPoint:
    day: date
    gmv: Decimal | None
    target: Decimal | None
    acos: Decimal | None


@dataclass
class Report:
    team: str
    period: str
    day: date
    first_day: date
    currency: str
    kpis: list[KpiLine]
    scorecard: dict[str, Any] | None
    movers: list[Mover]
    alerts: list[AlertLine]
    daily: list[DayPoint]
    stores: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        span = str(self.day) if self.first_day == self.day else f"{self.first_day} to {self.day}"
        return f"{self.team}: {self.period} report, {span}"


def first_day(period: str, day: date) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=6)
    return day.replace(day=1)


def previous_day(period: str, day: date) -> date:
    """The last day of the previous period of the same length."""
    if period == "day":
        return day - timedelta(days=1)
    if period == "week":
        return day - timedelta(days=7)
    last = day.replace(day=1) - timedelta(days=1)
    return last.replace(day=min(day.day, last.day))


def build_report(
    reader: StateReader,
    cards: Mapping[str, Scorecard],
    alerts: Iterable[Alert],
    team: str,
    period: str,
    day: date,
) -> Report:
    """The report of `team` over the period ending with local `day`."""
    if period not in PERIOD_WINDOWS:
        raise ValueError(f"period {period!r}: use one of {', '.join(PERIODS)}")
    stores = _team_stores(reader, team)
    window = PERIOD_WINDOWS[period]
    now = _team_row(reader, team, window, day)
    before = _team_row(reader, team, window, previous_day(period, day))
    card = None
    if team in cards:
        card = scorecard_rows(reader, cards, period, None, day=day, team=team)[0]
    start = first_day(period, day)
    return Report(
        team=team,
        period=period,
        day=day,
        first_day=start,
        currency=reader.reference.reporting,
        kpis=_kpi_lines(now, before, card),
        scorecard=card,
        movers=_movers(reader, stores, window, day, previous_day(period, day)),
        alerts=_alert_lines(alerts, stores, team, now),
        daily=_daily(reader, team, cards.get(team), start, day),
        stores=sorted(f"{p}/{m}/{s}" for p, m, s in stores),
    )


def _team_stores(reader: StateReader, team: str) -> set[tuple[str, str, str]]:
    stores = {key for key, owner in reader.reference.teams.items() if owner == team}
    if not stores:
        known = ", ".join(sorted(set(reader.reference.teams.values()))) or "none (give --teams)"
        raise ValueError(f"team {team!r} owns no store in the teams file (teams: {known})")
    return stores


def _team_row(reader: StateReader, team: str, window: str, day: date) -> dict[str, Any] | None:
    for row in kpi_rows(reader, "team", window, None, day=day):
        if row["scope"].get("team") == team:
            return row
    return None


def _numbers(row: Mapping[str, Any] | None) -> dict[str, Decimal]:
    values = row["values"] if row is not None else {}
    return {k: Decimal(v) for k, v in values.items() if v is not None}


def _kpi_lines(
    now: Mapping[str, Any] | None, before: Mapping[str, Any] | None, card: Mapping[str, Any] | None
) -> list[KpiLine]:
    current, previous = _numbers(now), _numbers(before)
    targets = {k["kpi"]: k for k in card["kpis"]} if card else {}
    names = list(HEADLINE) + [k for k in targets if k not in HEADLINE]
    lines = []
    for name in names:
        scored = targets.get(name, {})
        lines.append(
            KpiLine(
                kpi=name,
                unit=CATALOG[name].unit,
                value=current.get(name),
                previous=previous.get(name),
                target=_decimal(scored.get("target")),
                attainment=_decimal(scored.get("attainment")),
            )
        )
    return lines


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _movers(
    reader: StateReader,
    stores: set[tuple[str, str, str]],
    window: str,
    day: date,
    before: date,
) -> list[Mover]:
    found: list[Mover] = []
    for kind, by, kpi in (("sku", "store,sku", "gmv"), ("campaign", "store,campaign", "ad_sales")):
        now = _by_scope(reader, by, window, day, stores, kpi)
        then = _by_scope(reader, by, window, before, stores, kpi)
        moves = [
            Mover(kind, key[0], key[1], kpi, now.get(key, Decimal(0)), then.get(key, Decimal(0)))
            for key in sorted(set(now) | set(then))
        ]
        moves = [m for m in moves if m.delta != 0]
        ups = sorted((m for m in moves if m.delta > 0), key=lambda m: -m.delta)[:MOVERS]
        downs = sorted((m for m in moves if m.delta < 0), key=lambda m: m.delta)[:MOVERS]
        found.extend(ups + downs)
    return found


def _by_scope(
    reader: StateReader,
    by: str,
    window: str,
    day: date,
    stores: set[tuple[str, str, str]],
    kpi: str,
) -> dict[tuple[str, str], Decimal]:
    name = by.split(",")[1]
    out = {}
    for row in kpi_rows(reader, by, window, None, day=day):
        scope = row["scope"]
        if (scope["platform"], scope["marketplace"], scope["store"]) not in stores:
            continue
        value = row["values"].get(kpi)
        if value is not None:
            out[(scope["store"], scope[name])] = Decimal(value)
    return out


def _alert_lines(
    alerts: Iterable[Alert],
    stores: set[tuple[str, str, str]],
    team: str,
    now: Mapping[str, Any] | None,
) -> list[AlertLine]:
    """The team's firing episodes that overlap the period: when each fired and resolved."""
    if now is None or not now["window_start"]:
        return []
    start = datetime.fromisoformat(now["window_start"])
    end = datetime.fromisoformat(now["window_end"])
    episodes: dict[str, list[Alert]] = {}
    for alert in sorted(alerts, key=lambda a: a.at):
        if alert.muted or not _owned(alert.labels, stores, team):
            continue
        if alert.status == "firing":
            episodes.setdefault(alert.fingerprint, []).append(alert)
        elif alert.fingerprint in episodes:
            episodes[alert.fingerprint].append(alert)
    lines = []
    for transitions in episodes.values():
        lines.extend(_episodes(transitions, start, end))
    return sorted(lines, key=lambda line: (line.fired_at or start, line.rule))


def _episodes(transitions: Sequence[Alert], start: datetime, end: datetime) -> list[AlertLine]:
    lines, fired = [], None
    for alert in transitions:
        if alert.status == "firing":
            fired = fired or alert
            continue
        if fired is not None:
            lines.append(_line(fired, alert))
            fired = None
    if fired is not None:
        lines.append(_line(fired, None))
    return [
        line
        for line in lines
        if (line.fired_at is not None and line.fired_at < end)
        and (line.resolved_at is None or line.resolved_at >= start)
    ]


def _line(fired: Alert, resolved: Alert | None) -> AlertLine:
    scope = ", ".join(f"{k}={v}" for k, v in sorted(fired.labels.items()))
    return AlertLine(
        rule=fired.rule,
        severity=fired.severity,
        scope=scope,
        summary=fired.summary,
        fired_at=fired.started_at or fired.at,
        resolved_at=resolved.at if resolved is not None else None,
    )


def _owned(labels: Mapping[str, str], stores: set[tuple[str, str, str]], team: str) -> bool:
    if labels.get("team") == team:
        return True
    key = (labels.get("platform", ""), labels.get("marketplace", ""), labels.get("store", ""))
    return key in stores


def _daily(
    reader: StateReader, team: str, card: Scorecard | None, start: date, day: date
) -> list[DayPoint]:
    points = []
    current = start
    while current <= day:
        values = _numbers(_team_row(reader, team, "1d", current))
        points.append(
            DayPoint(
                current,
                values.get("gmv"),
                _day_target(reader, team, card, current),
                values.get("acos"),
            )
        )
        current += timedelta(days=1)
    return points


def _day_target(
    reader: StateReader, team: str, card: Scorecard | None, day: date
) -> Decimal | None:
    """The card's day target for GMV, else the team's monthly target spread over its days."""
    if card is not None:
        for item in card.kpis:
            if item.kpi == "gmv":
                target = item.targets.get("day")
                if target is not None:
                    return target
    monthly = reader.reference.targets.get((f"{day:%Y-%m}", "team", (team,)))
    if monthly is None or monthly.currency != reader.reference.reporting:
        return None
    return monthly.value / calendar.monthrange(day.year, day.month)[1]
