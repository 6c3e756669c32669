"""Cancellations that carry no lines (Amazon reports a cancelled order's items with
QuantityOrdered 0) and orders dated by placed_at: the newest status wins by occurred_at, the
order counts in the day it was placed, whatever order the versions arrive in."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from unit.streams.test_kpi import T0, kpis, order, rows, us_order

from rules.errors import InvalidEventError
from streams.events import Event, OrderEvent, decode, encode


def cancel(event_id: str, order_id: str, **changes: Any) -> OrderEvent:
    return order(
        event_id,
        marketplace="US",
        store_id="us-1",
        order_id=order_id,
        status="cancelled",
        lines=[],
        **changes,
    )


def test_a_cancellation_without_lines_is_a_valid_event_and_round_trips() -> None:
    event = cancel("e2", "o1", occurred_at=T0 + timedelta(days=1))
    assert (event.lines, event.currency) == ([], "")
    assert decode(encode(event), "t/0/1") == event


def test_only_a_cancellation_may_leave_out_its_lines() -> None:
    for status in ("placed", "shipped", "returned"):
        data = us_order("e1", "o1", "10.00", status=status).model_dump(mode="json")
        data["lines"] = []
        with pytest.raises(InvalidEventError, match="at least one line unless it is cancelled"):
            decode(json.dumps(data), "f:1")


def test_a_cancellation_without_lines_takes_the_sale_out_of_its_placement_day() -> None:
    events: list[Event] = [
        us_order("e1", "o1", "10.00"),
        us_order("e2", "o2", "30.00"),
        cancel("e3", "o1", occurred_at=T0 + timedelta(days=1)),
    ]
    values = kpis(events)
    assert (values["orders"], values["gmv"], values["cancel_rate"]) == ("1", "30.00", "0.500000")
    assert kpis(events, at=T0 + timedelta(days=1))["cancel_rate"] is None


@pytest.mark.parametrize("reverse", [False, True])
def test_the_sku_keeps_counting_the_cancellation_in_either_arrival_order(reverse: bool) -> None:
    events: list[Event] = [
        us_order("e1", "o1", "10.00"),
        cancel("e2", "o1", occurred_at=T0 + timedelta(hours=1)),
    ]
    if reverse:  # the late retry of "placed" must not undo the cancellation
        events.reverse()
    store = kpis(events)
    assert (store["orders"], store["gmv"], store["cancel_rate"]) == ("0", "0.00", "1.000000")
    [sku] = rows(events, by="store,sku")
    assert sku["scope"]["sku"] == "A"
    assert (sku["values"]["orders"], sku["values"]["cancel_rate"]) == ("0", "1.000000")


def test_a_cancellation_never_seen_placed_counts_on_the_day_it_was_placed() -> None:
    events: list[Event] = [
        us_order("e1", "o2", "30.00"),
        cancel("e2", "o1", occurred_at=T0 + timedelta(days=2), placed_at=T0),
    ]
    assert kpis(events)["cancel_rate"] == "0.500000"
    assert kpis(events, at=T0 + timedelta(days=2))["cancel_rate"] is None


def test_placed_at_dates_the_order_and_occurred_at_versions_it() -> None:
    placed = T0 - timedelta(days=2)
    shipped = us_order("e2", "o1", "10.00", status="shipped", occurred_at=T0, placed_at=placed)
    stale = us_order("e1", "o1", "10.00", occurred_at=T0 - timedelta(hours=1), placed_at=placed)
    for events in ([stale, shipped], [shipped, stale]):
        assert kpis(events, at=placed + timedelta(hours=1))["orders"] == "1"
        assert kpis(events)["orders"] == "0"  # not on the day of its last update
        [row] = rows(events, at=placed + timedelta(hours=1))
        assert row["values"]["gmv"] == "10.00"
