"""Baselines: how much of a usual day is behind us, from the past days' orders by local hour."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from unit.streams.test_kpi import order, run

from streams.embedded import reader
from streams.kpi import Stores, Touch
from streams.reference import Reference
from streams.state import decode_value, key_parts
from streams.values import usual_share

TOKYO = ZoneInfo("Asia/Tokyo")
SCOPE = Stores(Reference()).ref("amazon", "JP", "jp-1").scope()


def touch(at: datetime) -> Touch:
    return Touch(SCOPE, frozenset({"orders"}), at.astimezone(TOKYO).date(), None, at)


def evening_days(days: int = 3, per_hour: int = 5) -> list[dict[str, int]]:
    """Days whose orders all came in 18:00-21:59 local time."""
    return [{f"orders@{h:02d}": per_hour for h in range(18, 22)} for _ in range(days)]


def test_an_evening_business_has_done_nothing_usual_by_ten_in_the_morning() -> None:
    ten = datetime(2026, 11, 20, 10, 0, tzinfo=TOKYO)
    assert usual_share(evening_days(), touch(ten)) == 0
    # 19:30: 18:00-18:59 done and half of 19:00-19:59, of four equal hours.
    half_past_seven = datetime(2026, 11, 20, 19, 30, tzinfo=TOKYO)
    assert usual_share(evening_days(), touch(half_past_seven)) == Decimal("0.375")
    assert usual_share(evening_days(), touch(datetime(2026, 11, 20, 23, 0, tzinfo=TOKYO))) == 1


def test_too_few_orders_fall_back_to_the_share_of_the_hours() -> None:
    six = datetime(2026, 11, 20, 6, 0, tzinfo=TOKYO)
    assert usual_share(evening_days(days=1, per_hour=4), touch(six)) == Decimal("0.25")


def test_a_late_event_for_a_finished_day_compares_with_the_whole_usual_day() -> None:
    late = Touch(
        SCOPE,
        frozenset({"orders"}),
        date(2026, 11, 19),
        None,
        datetime(2026, 11, 20, 10, 0, tzinfo=TOKYO),
    )
    assert usual_share(evening_days(), late) == 1


def test_day_buckets_and_marketplace_rollups_keep_orders_by_local_hour() -> None:
    start = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)  # 18:30 in Tokyo
    events = [
        order(f"e{n}", order_id=f"o{n}", occurred_at=start + timedelta(minutes=40 * n))
        for n in range(3)
    ]
    events.append(
        order(
            "e0-cancel", order_id="o0", status="cancelled", occurred_at=start + timedelta(hours=3)
        )
    )
    engine = run(events)
    [day] = [
        decode_value(raw)[""]
        for key, raw in engine.state.stores.items()
        if key_parts(key)[1:4:2] == ["d", "2026-11-20"]
    ]
    # o0 at 18:30 was cancelled later: it leaves 18:00 (its own hour), not the hour it died in.
    assert {k: v for k, v in day.items() if k.startswith("orders@")} == {
        "orders@19": 2,
    }
    rollups = reader(engine.state).dump()["rollups"]
    assert rollups["marketplace/amazon/JP"]["2026-11-20"]["orders@19"] == 2
