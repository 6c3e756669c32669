"""Marketplace-local days, including daylight-saving days of 23 and 25 hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from streams.windows import day_window, local_day, marketplace_zone


def test_amazon_jp_day_is_a_jst_day() -> None:
    zone = marketplace_zone("amazon", "JP")
    window = local_day(datetime(2026, 11, 22, 15, 30, tzinfo=UTC), zone)  # 00:30 JST on the 23rd
    assert window.label == "2026-11-23"
    assert window.start == datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    assert window.end - window.start == timedelta(hours=24)


def test_amazon_us_uses_pacific_time_other_us_platforms_eastern() -> None:
    assert marketplace_zone("amazon", "US").key == "America/Los_Angeles"
    assert marketplace_zone("walmart", "US").key == "America/New_York"
    assert marketplace_zone("shopee", "MY").key == "Asia/Kuala_Lumpur"
    assert marketplace_zone("shopify", "ZZ").key == "UTC"


def test_daylight_saving_days_have_23_and_25_hours() -> None:
    zone = marketplace_zone("amazon", "US")
    spring = day_window(date(2026, 3, 8), zone)
    autumn = day_window(date(2026, 11, 1), zone)
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)
    late_evening = datetime(2026, 11, 2, 7, 30, tzinfo=UTC)  # 23:30 PST on Nov 1st
    assert local_day(late_evening, zone).label == "2026-11-01"
