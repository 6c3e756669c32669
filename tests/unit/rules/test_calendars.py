"""Calendars: public holidays per country, fixed date ranges, business hours, in local time."""

from __future__ import annotations

from datetime import datetime

import pytest

from rules.calendars import Calendar
from rules.schema import CalendarSpec


def calendar(**spec: object) -> Calendar:
    return Calendar("c", CalendarSpec.model_validate(spec))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


GOLDEN_WEEK = calendar(
    holidays="JP",
    names=["Showa Day", "Constitution", "Greenery", "Children"],
    span=True,
)


@pytest.mark.parametrize(
    ("moment", "active"),
    [
        ("2026-04-29T09:00:00+09:00", True),  # Showa Day
        ("2026-05-01T09:00:00+09:00", True),  # a working day inside the span
        ("2026-05-05T23:00:00+09:00", True),
        ("2026-05-06T09:00:00+09:00", False),  # the substitute holiday is not in names
        ("2026-04-28T14:59:00+00:00", False),  # 23:59 JST on the 28th
        ("2026-04-28T15:00:00+00:00", True),  # midnight JST on the 29th, still the 28th in UTC
    ],
)
def test_jp_golden_week_spans_its_holidays_in_japan_time(moment: str, active: bool) -> None:
    assert GOLDEN_WEEK.active(at(moment), "Asia/Tokyo") is active


def test_cn_spring_festival_by_holiday_name() -> None:
    spring = calendar(holidays="CN", names="Spring Festival")
    assert spring.active(at("2026-02-17T12:00:00+08:00"), "Asia/Shanghai")
    assert not spring.active(at("2026-03-02T12:00:00+08:00"), "Asia/Shanghai")


def test_us_thanksgiving_is_a_different_day_each_year() -> None:
    thanks = calendar(holidays="US", names="Thanksgiving")
    zone = "America/New_York"
    assert thanks.active(at("2026-11-26T10:00:00-05:00"), zone)
    assert thanks.active(at("2027-11-25T10:00:00-05:00"), zone)
    assert not thanks.active(at("2027-11-26T10:00:00-05:00"), zone)


def test_all_holidays_of_a_country_without_names() -> None:
    jp = calendar(holidays="JP")
    assert jp.active(at("2026-01-01T10:00:00+09:00"), "Asia/Tokyo")
    assert not jp.active(at("2026-01-05T10:00:00+09:00"), "Asia/Tokyo")


def test_fixed_range_includes_both_ends() -> None:
    prime = calendar(dates=["2026-07-08..2026-07-09"])
    zone = "America/Los_Angeles"
    assert prime.active(at("2026-07-08T00:00:00-07:00"), zone)
    assert prime.active(at("2026-07-09T23:59:00-07:00"), zone)
    assert not prime.active(at("2026-07-10T00:00:00-07:00"), zone)


def test_yearly_date_like_11_11_repeats_every_year() -> None:
    singles = calendar(dates="11-11")
    for year in (2026, 2031):
        assert singles.active(at(f"{year}-11-11T20:00:00+08:00"), "Asia/Shanghai")
    assert not singles.active(at("2026-11-12T00:30:00+08:00"), "Asia/Shanghai")


def test_yearly_range_over_new_year() -> None:
    new_year = calendar(dates="12-30..01-02")
    assert new_year.active(at("2026-12-31T12:00:00+00:00"), "UTC")
    assert new_year.active(at("2027-01-02T12:00:00+00:00"), "UTC")
    assert not new_year.active(at("2027-01-03T12:00:00+00:00"), "UTC")


def test_a_calendar_zone_overrides_the_scope_zone() -> None:
    cn_day = calendar(dates="11-11", zone="Asia/Shanghai")
    # 17:00 UTC on the 10th is 01:00 on the 11th in China, still the 10th in Los Angeles.
    assert cn_day.active(at("2026-11-10T17:00:00+00:00"), "America/Los_Angeles")


BUSINESS = calendar(hours="09:00-18:00", days=["mon", "tue", "wed", "thu", "fri"])


@pytest.mark.parametrize(
    ("moment", "zone", "active"),
    [
        ("2026-11-23T09:00:00+09:00", "Asia/Tokyo", True),  # Monday 09:00 JST
        ("2026-11-23T17:59:00+09:00", "Asia/Tokyo", True),
        ("2026-11-23T18:00:00+09:00", "Asia/Tokyo", False),
        ("2026-11-22T10:00:00+09:00", "Asia/Tokyo", False),  # Sunday
        ("2026-11-23T01:00:00+00:00", "Asia/Tokyo", True),  # 10:00 JST
        ("2026-11-23T01:00:00+00:00", "America/New_York", False),  # 20:00 Sunday in New York
    ],
)
def test_business_hours_in_the_marketplace_zone(moment: str, zone: str, active: bool) -> None:
    assert BUSINESS.active(at(moment), zone) is active


def test_night_shift_hours_run_past_midnight() -> None:
    night = calendar(hours="22:00-06:00", days=["fri"])
    assert night.active(at("2026-11-27T23:00:00+00:00"), "UTC")  # Friday night
    assert night.active(at("2026-11-28T05:00:00+00:00"), "UTC")  # Saturday early
    assert not night.active(at("2026-11-28T23:00:00+00:00"), "UTC")  # Saturday night


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dates": "2026-02-30"}, "cannot read '2026-02-30'"),
        ({"dates": "2026-07-09..2026-07-08"}, "cannot read"),
        ({"hours": "9-18"}, "write business hours as '09:00-18:00'"),
        ({"holidays": "JP", "dates": "11-11"}, "exactly one of"),
    ],
)
def test_bad_calendars_are_rejected(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CalendarSpec.model_validate(spec)
