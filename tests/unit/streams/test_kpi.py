"""KPI aggregation: hand-computed values, late and duplicate events, cancellations, restatements."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.kpis import SKU, STORE
from streams.events import AdSpendEvent, Event, InventoryEvent, OrderEvent
from streams.kpi import State, apply_event

T0 = datetime.fromisoformat("2026-11-23T01:00:00+00:00")  # 10:00 JST, 17:00 PST the day before


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
        "attributed_orders": 1,
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


def last_values(state: State, events: list[Event]) -> dict[str, Decimal | None]:
    values: dict[str, Decimal | None] = {}
    for event in events:
        for snapshot in apply_event(state, event):
            values = dict(snapshot.values)
    return values


def test_gmv_orders_units_in_minor_units_per_local_day() -> None:
    state = State()
    [snapshot] = apply_event(state, order("e1"))
    assert snapshot.level == STORE
    assert snapshot.values == {"gmv": Decimal(4460), "orders": Decimal(1), "units": Decimal(3)}
    assert snapshot.currency == "JPY"
    assert snapshot.window is not None
    assert snapshot.window.label == "2026-11-23"
    assert snapshot.zone == "Asia/Tokyo"
    assert dict(snapshot.labels) == {"platform": "amazon", "marketplace": "JP", "store": "jp-1"}


def test_duplicate_event_id_counts_once() -> None:
    state = State()
    apply_event(state, order("e1"))
    assert apply_event(state, order("e1")) == []
    [snapshot] = apply_event(state, order("e2", order_id="o-2"))
    assert snapshot.values["orders"] == 2


def test_test_orders_never_count() -> None:
    state = State()
    assert apply_event(state, order("e1", is_test=True)) == []
    [snapshot] = apply_event(state, order("e2", order_id="o-2"))
    assert snapshot.values["orders"] == 1


def test_cancellation_next_day_updates_the_original_day() -> None:
    state = State()
    apply_event(state, order("e1"))
    apply_event(state, order("e2", order_id="o-2"))
    [snapshot] = apply_event(
        state, order("e3", status="cancelled", occurred_at=T0 + timedelta(days=1))
    )
    assert snapshot.window is not None
    assert snapshot.window.label == "2026-11-23"
    assert snapshot.values == {"gmv": Decimal(4460), "orders": Decimal(1), "units": Decimal(3)}


def test_status_change_that_keeps_the_sale_changes_nothing() -> None:
    state = State()
    apply_event(state, order("e1"))
    assert apply_event(state, order("e2", status="shipped")) == []


def test_acos_is_spend_over_sales_per_sku_and_store() -> None:
    state = State()
    snapshots = apply_event(state, ad("a1", "30.00", "100.00"))
    assert [s.level for s in snapshots] == [STORE, SKU]
    assert snapshots[1].values["acos"] == Decimal("0.3")
    assert snapshots[1].values["ad_spend"] == Decimal("30.00")
    assert snapshots[1].window is not None
    assert snapshots[1].window.label == "2026-11-22"  # 17:00 in Los Angeles


def test_ad_restatement_replaces_instead_of_adding() -> None:
    state = State()
    apply_event(state, ad("a1", "30.00", "100.00"))
    snapshots = apply_event(state, ad("a2", "30.00", "150.00", occurred_at=T0 + timedelta(days=7)))
    assert snapshots[1].values["ad_sales"] == Decimal("150.00")
    assert snapshots[1].values["acos"] == Decimal("0.2")


def test_two_intervals_add_up() -> None:
    state = State()
    apply_event(state, ad("a1", "30.00", "100.00"))
    later = {"interval_start": T0 + timedelta(hours=1), "interval_end": T0 + timedelta(hours=2)}
    values = last_values(state, [ad("a2", "10.00", "0", **later)])
    assert values["ad_spend"] == Decimal("40.00")
    assert values["acos"] == Decimal("0.4")


def test_acos_without_sales_is_undefined_not_zero() -> None:
    values = last_values(State(), [ad("a1", "30.00", "0")])
    assert values["acos"] is None


def test_inventory_sums_warehouses_and_latest_as_of_wins() -> None:
    state = State()
    values = last_values(
        state,
        [
            stock("i1", "fba", 10, T0),
            stock("i2", "3pl", 5, T0),
            stock("i3", "fba", 2, T0 + timedelta(hours=1)),
        ],
    )
    assert values["available"] == 7
    assert apply_event(state, stock("i4", "fba", 50, T0 - timedelta(hours=1))) == []
