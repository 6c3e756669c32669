"""Marketplace-local time: which zone a marketplace keeps its days in, and the day windows.

An Amazon JP "day" is a JST day, an Amazon US day a Pacific day; a daylight-saving day has 23 or
25 hours, which falls out of computing both ends in the zone rather than adding 24 hours.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from rules.kpis import Window

# Zones the marketplaces themselves report in. Platform-specific entries win over the country.
PLATFORM_ZONES: Final[dict[tuple[str, str], str]] = {
    ("amazon", "US"): "America/Los_Angeles",
    ("amazon", "CA"): "America/Los_Angeles",
    ("amazon", "MX"): "America/Los_Angeles",
}
COUNTRY_ZONES: Final[dict[str, str]] = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "GB": "Europe/London",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "IT": "Europe/Rome",
    "ES": "Europe/Madrid",
    "IE": "Europe/Dublin",
    "BE": "Europe/Brussels",
    "NL": "Europe/Amsterdam",
    "SE": "Europe/Stockholm",
    "PL": "Europe/Warsaw",
    "TR": "Europe/Istanbul",
    "EG": "Africa/Cairo",
    "ZA": "Africa/Johannesburg",
    "JP": "Asia/Tokyo",
    "CN": "Asia/Shanghai",
    "SG": "Asia/Singapore",
    "MY": "Asia/Kuala_Lumpur",
    "TH": "Asia/Bangkok",
    "VN": "Asia/Ho_Chi_Minh",
    "PH": "Asia/Manila",
    "ID": "Asia/Jakarta",
    "TW": "Asia/Taipei",
    "KR": "Asia/Seoul",
    "AU": "Australia/Sydney",
    "AE": "Asia/Dubai",
    "SA": "Asia/Riyadh",
    "IN": "Asia/Kolkata",
}


@functools.cache
def marketplace_zone(platform: str, marketplace: str) -> ZoneInfo:
    """The time zone a marketplace's days are counted in (UTC where we know none)."""
    name = PLATFORM_ZONES.get((platform, marketplace)) or COUNTRY_ZONES.get(marketplace, "UTC")
    return ZoneInfo(name)


@functools.lru_cache(maxsize=65536)
def local_day(moment: datetime, zone: ZoneInfo) -> Window:
    """The marketplace-local calendar day that `moment` falls in."""
    day = moment.astimezone(zone).date()
    return day_window(day, zone)


@functools.lru_cache(maxsize=65536)
def day_window(day: date, zone: ZoneInfo) -> Window:
    """The local day `day` as UTC instants: aware datetimes sharing one ZoneInfo subtract as wall
    clocks (a 23-hour day would come out as 24), UTC ones as elapsed time."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return Window(start=start, end=end, label=day.isoformat())


@functools.lru_cache(maxsize=65536)
def hour_period(moment: datetime, zone: ZoneInfo) -> Window:
    """The marketplace-local clock hour of `moment`; its label carries the UTC offset, so the
    repeated hour of a daylight-saving fall-back day is two periods, not one."""
    local = moment.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    start = local.astimezone(UTC)
    return Window(start=start, end=start + timedelta(hours=1), label=local.isoformat())


def hour_start(moment: datetime, zone: ZoneInfo) -> int:
    """The start of the local clock hour of `moment`, as epoch seconds: the id of an hour bucket
    (unambiguous on a daylight-saving day; on the :30 for zones half an hour off UTC)."""
    local = moment.astimezone(zone)
    return int(moment.timestamp() // 1) - local.minute * 60 - local.second


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


@functools.lru_cache(maxsize=65536)
def hour_day(start: int, zone: ZoneInfo) -> date:
    """The local day an hour bucket (by its start) belongs to."""
    return datetime.fromtimestamp(start, zone).date()


@functools.lru_cache(maxsize=65536)
def hour_of_day(start: int, zone: ZoneInfo) -> int:
    """The local clock hour (0-23) an hour bucket starts at."""
    return datetime.fromtimestamp(start, zone).hour


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch: how versions and marks are compared and stored."""
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
