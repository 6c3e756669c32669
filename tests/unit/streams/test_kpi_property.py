"""Property: for random order and ad streams (duplicates, status changes, test orders,
restatements, out-of-order days), the engine's KPIs equal a straightforward recomputation from
the raw events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.load import RuleSet
from streams.events import AdSpendEvent, Event, OrderEvent
from streams.kpi import State
from streams.pipeline import Pipeline
from streams.query import kpi_rows
from streams.reference import Reference

START = datetime(2026, 11, 20, tzinfo=UTC)
LA = ZoneInfo("America/Los_Angeles")
STATUSES = ("placed", "shipped", "cancelled", "returned")


@st.composite
def order_events(draw: Any) -> list[Event]:
    events: list[Event] = []
    for number in range(draw(st.integers(1, 25))):
        store = draw(st.sampled_from(["s1", "s2"]))
        order_id = f"o{draw(st.integers(0, 8))}"
        minutes = draw(st.integers(0, 3 * 24 * 60))
        event = OrderEvent.model_validate(
            {
                "event_id": f"e{draw(st.integers(0, 30))}-{store}",
                "occurred_at": START + timedelta(minutes=minutes),
                "platform": "amazon",
                "marketplace": "US",
                "store_id": store,
                "order_id": order_id,
                "status": draw(st.sampled_from(STATUSES)),
                "is_test": draw(st.booleans()) and number % 5 == 0,
                "lines": [
                    {
                        "sku": "A",
                        "quantity": draw(st.integers(1, 4)),
                        "unit_price": {
                            "amount": f"{draw(st.integers(1, 9999)) / 100:.2f}",
                            "currency": "USD",
                        },
                    }
                ],
            }
        )
        events.append(event)
        if draw(st.booleans()):
            events.append(_ad(draw, store))
    return events


def _ad(draw: Any, store: str) -> AdSpendEvent:
    hour = START + timedelta(hours=draw(st.integers(0, 71)))
    return AdSpendEvent.model_validate(
        {
            "event_id": f"a{draw(st.integers(0, 1000))}",
            "occurred_at": hour + timedelta(hours=2),
            "platform": "amazon",
            "marketplace": "US",
            "store_id": store,
            "campaign_id": "c",
            "sku": "A",
            "interval_start": hour,
            "interval_end": hour + timedelta(hours=1),
            "impressions": 100,
            "clicks": draw(st.integers(0, 10)),
            "spend": {"amount": f"{draw(st.integers(0, 500)) / 100:.2f}", "currency": "USD"},
            "attributed_sales": {
                "amount": f"{draw(st.integers(0, 900)) / 100:.2f}",
                "currency": "USD",
            },
            "attributed_orders": 0,
        }
    )


def recompute(events: list[Event]) -> dict[tuple[str, date], dict[str, Decimal]]:
    """The KPIs of each store-day the obvious way: last word per order and per ad interval."""
    seen: set[tuple[str, str]] = set()
    first_day: dict[tuple[str, str], date] = {}
    latest: dict[tuple[str, str], OrderEvent] = {}
    ads: dict[tuple[str, datetime], AdSpendEvent] = {}
    for event in events:
        if (event.store_id, event.event_id) in seen:
            continue
        seen.add((event.store_id, event.event_id))
        if isinstance(event, OrderEvent):
            key = (event.store_id, event.order_id)
            first_day.setdefault(key, event.occurred_at.astimezone(LA).date())
            latest[key] = event
        elif isinstance(event, AdSpendEvent):
            ads[(event.store_id, event.interval_start)] = event
    totals: dict[tuple[str, date], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for key, event in latest.items():
        day = totals[(key[0], first_day[key])]
        if event.is_test:
            continue
        if event.status == "cancelled":
            day["cancelled"] += 1
            continue
        day["orders"] += 1
        day["units"] += sum(line.quantity for line in event.lines)
        day["gmv"] += sum(line.unit_price.amount * line.quantity for line in event.lines)
    for (store, start), event in ads.items():
        totals[(store, start.astimezone(LA).date())]["ad_spend"] += event.spend.amount
    return totals


@settings(max_examples=150, deadline=None)
@given(order_events())
def test_engine_equals_recomputation(events: list[Event]) -> None:
    state, reference = State(), Reference()
    pipeline = Pipeline(state, RuleSet([]), reference)
    for event in events:
        pipeline.process_inline(event)
    expected = recompute(events)
    for (store, day), want in expected.items():
        at = datetime.combine(day, datetime.min.time(), LA) + timedelta(hours=12)
        rows = {
            row["scope"]["store"]: row["values"]
            for row in kpi_rows(state, reference, "store", "1d", at)
        }
        got = rows.get(store, {})
        assert Decimal(got.get("orders", "0")) == want["orders"]
        assert Decimal(got.get("units", "0")) == want["units"]
        assert Decimal(got.get("gmv") or "0") == want["gmv"]
        assert Decimal(got.get("ad_spend") or "0") == want["ad_spend"]
        placed = want["orders"] + want["cancelled"]
        rate = got.get("cancel_rate")
        if placed:
            assert Decimal(rate) == (want["cancelled"] / placed).quantize(Decimal("0.000001"))
        else:
            assert rate is None
