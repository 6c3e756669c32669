"""Named calendars: is a moment inside a holiday, a promotion or business hours? Pure functions.

A calendar is read in the scope's marketplace zone (an Amazon JP holiday is a JST day) unless
it names its own `zone`. Public holidays come from the `holidays` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from rules.schema import WEEKDAYS, CalendarSpec, DateRange, Hours

# Years a holiday name filter is checked against at load time: a name that matches nothing in
# these years is a typo, not a rare holiday.
_CHECK_YEARS = range(2024, 2031)


@dataclass(frozen=True)
class Calendar:
    """A compiled calendar; `active` is all a rule needs."""

    name: str
    spec: CalendarSpec
    # Asked for every evaluation of a rule that mutes with the calendar; calendars resolve to
    # the minute, so answers are kept per minute and zone (a few thousand at most).
    _answers: dict[tuple[int, str], bool] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def active(self, at: datetime, zone: str) -> bool:
        key = (int(at.timestamp() // 60), zone)
        found = self._answers.get(key)
        if found is None:
            if len(self._answers) >= 4096:
                self._answers.clear()
            local = datetime.fromtimestamp(key[0] * 60, ZoneInfo(self.spec.zone or zone))
            found = self._answers[key] = self._active_at(local)
        return found

    def _active_at(self, local: datetime) -> bool:
        if self.spec.holidays:
            return local.date() in holiday_dates(self._key(), local.year)
        if self.spec.dates:
            return any(in_range(r, local.date()) for r in self.spec.dates)
        if self.spec.hours is not None:
            return in_hours(self.spec.hours, self.spec.days, local)
        return False  # pragma: no cover - the schema requires one kind

    def _key(self) -> tuple[str, tuple[str, ...], bool]:
        return (self.spec.holidays or "", tuple(self.spec.names), self.spec.span)


@lru_cache(maxsize=512)
def holiday_dates(key: tuple[str, tuple[str, ...], bool], year: int) -> frozenset[date]:
    """The days of `country`'s holidays whose name contains one of `names` (all when none);
    with `span`, every day from the first to the last of them (JP Golden Week's working days)."""
    country, names, span = key
    found = sorted(
        day
        for day, title in holidays.country_holidays(country, years=year).items()
        if not names or any(n.lower() in title.lower() for n in names)
    )
    if span and found:
        count = (found[-1] - found[0]).days + 1
        return frozenset(found[0] + timedelta(days=k) for k in range(count))
    return frozenset(found)


def in_range(span: DateRange, day: date) -> bool:
    """Both ends included; a yearly range may run over New Year (12-30..01-02)."""
    if span.first[0]:
        return date(*span.first) <= day <= date(*span.last)
    here = (day.month, day.day)
    first, last = span.first[1:], span.last[1:]
    if first <= last:
        return first <= here <= last
    return here >= first or here <= last


def in_hours(hours: Hours, days: Sequence[str], local: datetime) -> bool:
    """Local time within [start, end) on one of `days`; an end at or before the start runs past
    midnight and belongs to the day it started on."""
    now = local.time().replace(tzinfo=None)
    weekday = WEEKDAYS[local.weekday()]
    if hours.start < hours.end:
        return weekday in days and hours.start <= now < hours.end
    if now >= hours.start:
        return weekday in days
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    return yesterday in days and now < hours.end


def problems_of(name: str, spec: CalendarSpec) -> list[str]:
    """What is wrong with a calendar beyond its schema: unknown country, zone or holiday name."""
    where = f"calendar {name!r}"
    if spec.zone is not None and not _is_zone(spec.zone):
        return [f"{where}: unknown time zone {spec.zone!r} (write it as 'Asia/Tokyo')"]
    if not spec.holidays:
        return []
    if spec.holidays not in holidays.list_supported_countries():
        return [f"{where}: no public holidays are known for country {spec.holidays!r}"]
    titles = _titles(spec.holidays)
    return [
        f"{where}: no {spec.holidays} holiday is named like {n!r} "
        f"(known: {', '.join(sorted(titles))})"
        for n in spec.names
        if not any(n.lower() in t.lower() for t in titles)
    ]


def _titles(country: str) -> set[str]:
    titles: set[str] = set()
    for year in _CHECK_YEARS:
        titles.update(holidays.country_holidays(country, years=year).values())
    # Substitute days carry their dates in the name ("Day off (substituted from 01/04/2026)").
    return {t for t in titles if not any(c.isdigit() for c in t)}


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
