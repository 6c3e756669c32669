"""The KPI engine: hand-computed values per KPI, undefined cases, JPY and FX, DST days, late and
duplicate events, cancellations after the fact, ad restatements, versions arriving out of order,
money rounded once per day, rollups across stores."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rules.load import RuleSet
from streams.embedded import Engine, reader
from streams.events import AdSpendEvent, Event, InventoryEvent, OrderEvent
from streams.kpi import LateEventError
from streams.query import kpi_rows
from streams.reference import Reference, load_reference
from streams.state import decode_value, key_parts

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 10:00 JST on the 23rd, 17:00 PST on the 22nd


def order(event_id: str, **changes: Any) -> OrderEvent:
    data: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": T0,
        "platform": "amazon",
        "marketplace": "JP",
        "store_id": "jp-1",
        "order_id": "o-1",
        "status": "placed",
        "lines": [
            {"sku": "A", "quantity": 2, "unit_price": {"amount": "1980", "currency": "JPY"}},
            {"sku": "B", "quantity": 1, "unit_price": {"amount": "500", "currency": "JPY"}},
        ],
    }
    data.update(changes)
    return OrderEvent.model_validate(data)


def us_order(
    event_id: str, order_id: str, amount: str, quantity: int = 1, **changes: Any
) -> OrderEvent:
    line = {"sku": "A", "quantity": quantity, "unit_price": {"amount": amount, "currency": "USD"}}
    return order(
        event_id, marketplace="US", store_id="us-1", order_id=order_id, lines=[line], **changes
    )


def ad(event_id: str, spend: str, sales: str, **changes: Any) -> AdSpendEvent:
    data: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": T0 + timedelta(hours=1),
        "platform": "amazon",
        "marketplace": "US",
        "store_id": "us-1",
        "campaign_id": "c-1",
        "sku": "A",
        "interval_start": T0,
        "interval_end": T0 + timedelta(hours=1),
        "impressions": 1000,
        "clicks": 10,
        "spend": {"amount": spend, "currency": "USD"},
        "attributed_sales": {"amount": sales, "currency": "USD"},
        "attributed_orders": 2,
    }
    data.update(changes)
    return AdSpendEvent.model_validate(data)


def stock(event_id: str, warehouse: str, available: int, as_of: datetime) -> InventoryEvent:
    return InventoryEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": as_of,
            "platform": "amazon",
            "marketplace": "US",
            "store_id": "us-1",
            "sku": "A",
            "warehouse": warehouse,
            "available": available,
            "as_of": as_of,
        }
    )


def run(events: list[Event], reference: Reference | None = None) -> Engine:
    """Each event its own message, as a worker reads single-event messages."""
    engine = Engine(RuleSet([]), reference or Reference())
    engine.process_events(events)
    return engine


def rows(
    events: list[Event],
    by: str = "store",
    window: str = "1d",
    at: datetime = T0 + timedelta(hours=2),
    reference: Reference | None = None,
) -> list[dict[str, Any]]:
    engine = run(events, reference)
    return kpi_rows(reader(engine.state, engine.reference), by, window, at)


def kpis(
    events: list[Event],
    by: str = "store",
    window: str = "1d",
    at: datetime = T0 + timedelta(hours=2),
    reference: Reference | None = None,
) -> dict[str, Any]:
    found = rows(events, by, window, at, reference)
    assert len(found) == 1, found
    values: dict[str, Any] = found[0]["values"]
    return values


def jpy_reference(tmp_path: Path, rate: str = "0.0067") -> Reference:
    fx = tmp_path / "fx.csv"
    fx.write_text(f"date,currency,rate\n2026-11-01,JPY,{rate}\n")
    return load_reference("USD", fx=fx)


def test_jpy_store_counts_yen_in_its_jst_day_and_converts_once(tmp_path: Path) -> None:
    values = kpis([order("e1")], reference=jpy_reference(tmp_path))
    # 2 x 1980 + 500 = 4460 JPY; x 0.0067 = 29.882 USD -> 29.88 (half-even, in cents)
    assert values["gmv"] == "29.88"
    assert (values["orders"], values["units"]) == ("1", "3")
    assert values["aov"] == "29.88"


def test_money_without_an_fx_rate_is_undefined_never_zero() -> None:
    values = kpis([order("e1")])
    assert values["gmv"] is None
    assert values["aov"] is None
    assert values["orders"] == "1"


def test_the_native_value_stays_exact_without_fx() -> None:
    [row] = rows([order("e1")])
    assert (row["native"]["gmv"], row["native_currency"]) == ("4460", "JPY")


def test_duplicate_event_ids_and_test_orders_count_nothing() -> None:
    values = kpis(
        [
            us_order("e1", "o1", "10.00"),
            us_order("e1", "o1", "10.00"),
            us_order("e2", "o2", "99.00", is_test=True),
        ]
    )
    assert (values["orders"], values["gmv"]) == ("1", "10.00")


def test_cancellation_next_day_undoes_the_sale_on_the_day_it_was_placed() -> None:
    events: list[Event] = [
        us_order("e1", "o1", "10.00"),
        us_order("e2", "o2", "30.00"),
        us_order("e3", "o1", "10.00", status="cancelled", occurred_at=T0 + timedelta(days=1)),
    ]
    values = kpis(events)
    assert (values["orders"], values["gmv"]) == ("1", "30.00")
    assert values["cancel_rate"] == "0.500000"
    next_day = kpis(events, at=T0 + timedelta(days=1))
    assert next_day["orders"] == "0"
    assert next_day["cancel_rate"] is None  # no orders that day: undefined, not 0


def test_return_rate_is_returned_units_over_units() -> None:
    values = kpis(
        [
            us_order("e1", "o1", "10.00", quantity=3),
            us_order("e2", "o2", "5.00"),
            us_order("e3", "o2", "5.00", status="returned"),
        ]
    )
    assert values["return_rate"] == "0.250000"
    assert values["gmv"] == "35.00"


def test_ad_kpis_per_sku_with_hand_computed_values() -> None:
    values = kpis([ad("a1", "30.00", "120.00")], by="store,sku")
    assert values["acos"] == "0.250000"
    assert values["roas"] == "4.000000"
    assert values["ctr"] == "0.010000"
    assert values["cpc"] == "3.00"
    assert values["cvr"] == "0.200000"


def test_ad_restatement_replaces_instead_of_adding() -> None:
    values = kpis(
        [
            ad("a1", "30.00", "100.00"),
            ad("a2", "30.00", "150.00", occurred_at=T0 + timedelta(days=7)),
        ],
        by="store,campaign",
    )
    assert values["ad_sales"] == "150.00"
    assert values["acos"] == "0.200000"


def test_acos_without_ad_sales_is_undefined() -> None:
    assert kpis([ad("a1", "30.00", "0")], by="store,sku")["acos"] is None


def test_tacos_and_gross_margin_combine_orders_ads_and_unit_costs(tmp_path: Path) -> None:
    costs = tmp_path / "costs.csv"
    costs.write_text(
        "platform,marketplace,store,sku,unit_cost,currency\namazon,US,us-1,A,20.00,USD\n"
    )
    reference = load_reference("USD", costs=costs)
    values = kpis(
        [us_order("e1", "o1", "50.00", quantity=2), ad("a1", "10.00", "50.00")], reference=reference
    )
    assert values["tacos"] == "0.100000"
    # (100 - 2 x 20 - 10 - 0) / 100
    assert values["gross_margin"] == "0.500000"


def test_gross_margin_is_undefined_without_a_unit_cost() -> None:
    assert kpis([us_order("e1", "o1", "50.00")])["gross_margin"] is None


def test_inventory_sums_warehouses_and_the_latest_as_of_wins() -> None:
    values = kpis(
        [
            stock("i1", "fba", 10, T0),
            stock("i2", "3pl", 5, T0),
            stock("i3", "fba", 2, T0 + timedelta(hours=1)),
            stock("i4", "fba", 50, T0 - timedelta(hours=1)),
        ],
        by="store,sku",
    )
    assert values["available"] == "7"


def test_velocity_days_of_cover_and_stockout() -> None:
    sales = [
        us_order(f"e{n}", f"o{n}", "10.00", quantity=2, occurred_at=T0 - timedelta(days=n))
        for n in range(7)
    ]
    values = kpis([*sales, stock("i1", "fba", 21, T0)], by="store,sku", window="7d")
    assert values["velocity"] == "2.000000"  # 14 units over 7 days
    assert values["days_of_cover"] == "10.500000"
    assert values["stockout"] == "0"
    empty = kpis([*sales, stock("i1", "fba", 0, T0)], by="store,sku", window="7d")
    assert (empty["days_of_cover"], empty["stockout"]) == ("0.000000", "1")


def test_target_attainment_and_pace(tmp_path: Path) -> None:
    targets = tmp_path / "targets.csv"
    targets.write_text(
        "month,level,platform,marketplace,store,team,amount,currency\n"
        "2026-11,store,amazon,US,us-1,,1000,USD\n"
    )
    reference = load_reference("USD", targets=targets)
    # 16 Nov 00:00 PST: 361 of the month's 721 hours have passed (1 Nov was a 25-hour day).
    at = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
    values = kpis(
        [us_order("e1", "o1", "250.00", occurred_at=at - timedelta(hours=1))],
        window="mtd",
        at=at,
        reference=reference,
    )
    assert values["target_attainment"] == "0.250000"
    assert values["pace"] == "0.499307"  # 0.25 / (361 / 721)


def test_a_dst_day_has_23_hours_and_its_hours_stay_apart() -> None:
    spring = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)  # 00:00 PST, the day clocks jump forward
    events = [
        us_order(f"e{h}", f"o{h}", "1.00", occurred_at=spring + timedelta(hours=h))
        for h in range(24)
    ]
    engine = run(events)
    view = reader(engine.state, engine.reference)
    day = kpi_rows(view, "store", "1d", spring + timedelta(hours=12))[0]
    assert day["values"]["orders"] == "23"  # the 24th hour is already the 9th
    assert day["window_end"] == "2026-03-09T07:00:00+00:00"
    trailing = kpi_rows(view, "store", "24h", spring + timedelta(hours=23))[0]
    assert trailing["values"]["orders"] == "24"


def test_an_event_past_retention_is_late() -> None:
    engine = run([us_order("e1", "o1", "1.00")])
    with pytest.raises(LateEventError, match=r"late: .* more than 63 days before"):
        engine.process_events([us_order("e2", "o2", "1.00", occurred_at=T0 - timedelta(days=64))])
    late_but_kept = us_order("e3", "o3", "1.00", occurred_at=T0 - timedelta(days=10))
    assert engine.process_events([late_but_kept]) == []
    view = reader(engine.state, engine.reference)
    assert kpi_rows(view, "store", "28d", T0)[0]["values"]["orders"] == "2"


def test_old_buckets_expire_as_the_store_moves_on() -> None:
    engine = run(
        [
            us_order("e1", "o1", "1.00"),
            us_order("e2", "o2", "1.00", occurred_at=T0 + timedelta(days=70)),
            us_order("e3", "o3", "1.00", occurred_at=T0 + timedelta(days=71)),
        ]
    )
    buckets = [key_parts(k) for k in engine.state.stores]
    days = sorted(parts[3] for parts in buckets if parts[1] == "d")
    assert days == ["2027-01-31", "2027-02-01"]  # the store's days in Pacific time
    hours = [int(parts[3]) for parts in buckets if parts[1] == "h"]
    assert len(hours) == 2
    # The order of 22 Nov is gone with its hour: a late status for it would count anew.
    view = reader(engine.state, engine.reference)
    assert kpi_rows(view, "store", "28d", T0 + timedelta(days=71))[0]["values"]["orders"] == "2"


def test_rollups_sum_stores_in_the_reporting_currency_only(tmp_path: Path) -> None:
    teams = tmp_path / "teams.csv"
    teams.write_text("platform,marketplace,store,team\namazon,JP,jp-1,east\namazon,US,us-1,east\n")
    fx = tmp_path / "fx.csv"
    fx.write_text("date,currency,rate\n2026-11-01,JPY,0.0067\n")
    reference = load_reference("USD", fx=fx, teams=teams)
    events: list[Event] = [
        order("e1"),
        us_order("e2", "o2", "10.00", occurred_at=T0 + timedelta(hours=10)),
    ]
    team = rows(events, "team", "1d", T0 + timedelta(hours=12), reference)
    assert team[0]["scope"] == {"team": "east"}
    # 29.882 (JP, 23 Nov, unrounded) + 10.00 (US, 23 Nov), rounded once: 39.88
    assert team[0]["values"]["gmv"] == "39.88"
    market = rows(events, "marketplace", "1d", T0 + timedelta(hours=12), reference)
    assert [row["scope"]["marketplace"] for row in market] == ["JP", "US"]


def test_fx_rates_are_date_effective(tmp_path: Path) -> None:
    fx = tmp_path / "fx.csv"
    fx.write_text("date,currency,rate\n2026-11-01,JPY,0.0067\n2026-11-23,JPY,0.0070\n")
    reference = load_reference("USD", fx=fx)
    assert reference.fx.rate("JPY", date(2026, 11, 22)) == Decimal("0.0067")
    assert reference.fx.rate("JPY", date(2026, 11, 23)) == Decimal("0.0070")
    assert reference.fx.rate("JPY", date(2026, 10, 31)) is None
    assert reference.fx.convert_minor(4460, "JPY", date(2026, 11, 23)) == 3122  # 31.22 USD


def test_the_pipeline_tells_its_observer_every_judged_value() -> None:
    from rules.load import load_default

    seen: list[tuple[str, Any]] = []
    engine = Engine(load_default(), Reference())
    engine.observe(lambda evaluation: seen.append((evaluation.rule.name, evaluation.value)))
    engine.process_events([stock("i1", "fba", 3, T0)])
    assert seen == [("stockout", Decimal(3))]


def test_hour_buckets_keep_their_counters_72_hours_and_their_orders_longer() -> None:
    engine = run(
        [
            us_order("e1", "o1", "10.00"),
            us_order("e2", "o2", "1.00", occurred_at=T0 + timedelta(days=4)),
        ]
    )
    hours = {
        int(key_parts(k)[3]): decode_value(v)
        for k, v in engine.state.stores.items()
        if key_parts(k)[1] == "h"
    }
    old, new = sorted(hours)
    assert "c" not in hours[old]  # only its order is kept
    assert "o1" in hours[old]["o"]
    assert "c" in hours[new]
    # A late cancellation still finds the order and takes it out of its day.
    engine.process_events(
        [us_order("e3", "o1", "10.00", status="cancelled", occurred_at=T0 + timedelta(days=4))]
    )
    view = reader(engine.state, engine.reference)
    day = kpi_rows(view, "store", "1d", T0 + timedelta(hours=2))[0]["values"]
    assert (day["orders"], day["cancel_rate"]) == ("0", "1.000000")


# Versions arriving out of order -------------------------------------------------------------


def test_a_late_retry_of_placed_does_not_undo_a_cancellation() -> None:
    placed = us_order("e1", "o1", "10.00")
    cancelled = us_order(
        "e2", "o1", "10.00", status="cancelled", occurred_at=T0 + timedelta(hours=1)
    )
    for events in ([placed, cancelled], [cancelled, placed], [placed, cancelled, placed]):
        values = kpis(events)
        assert (values["orders"], values["gmv"], values["cancel_rate"]) == ("0", "0.00", "1.000000")


def test_an_order_stays_in_the_day_it_was_placed_whichever_version_comes_first() -> None:
    placed = us_order("e1", "o1", "10.00")  # 22 Nov 17:00 in Los Angeles
    returned = us_order("e2", "o1", "10.00", status="returned", occurred_at=T0 + timedelta(days=3))
    for events in ([placed, returned], [returned, placed]):
        day = kpis(events, at=T0 + timedelta(hours=2))
        assert (day["orders"], day["return_rate"]) == ("1", "1.000000")
        later = kpis(events, at=T0 + timedelta(days=3))
        assert later["orders"] == "0"


def test_an_ad_restatement_that_arrives_before_the_original_report_stays() -> None:
    original = ad("a1", "30.00", "100.00")
    restated = ad("a2", "30.00", "150.00", occurred_at=T0 + timedelta(days=7))
    for events in ([original, restated], [restated, original]):
        assert kpis(events, by="store,campaign")["ad_sales"] == "150.00"


def test_a_tie_of_times_is_won_by_the_later_arrival() -> None:
    # A corrected export row: same time, new id, new figures.
    first = us_order("e1", "o1", "10.00")
    corrected = us_order("e2", "o1", "12.00")
    assert kpis([first, corrected])["gmv"] == "12.00"


# Money that reconciles ------------------------------------------------------------------------


def test_a_days_total_is_its_local_total_times_the_days_rate_rounded_once(tmp_path: Path) -> None:
    # 2,000 orders of 333 JPY at 0.0067: each is 2.2311 USD. Rounded per order they would sum
    # to 2,000 x 2.23 = 4,460.00; the day's total is 666,000 JPY x 0.0067 = 4,462.20 USD.
    orders = [
        order(
            f"e{n}",
            order_id=f"o{n}",
            lines=[{"sku": "A", "quantity": 1, "unit_price": {"amount": "333", "currency": "JPY"}}],
        )
        for n in range(2000)
    ]
    values = kpis(orders, reference=jpy_reference(tmp_path))
    assert values["gmv"] == "4462.20"
    assert values["aov"] == "2.23"  # 4462.2 / 2000 = 2.2311, rounded once
