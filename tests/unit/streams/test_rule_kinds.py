"""Rule kinds through the pipeline: change against a baseline, no data, days of cover."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rules.alerts import Alert
from rules.load import RuleSet, load_text
from streams.embedded import Engine
from streams.events import Event, InventoryEvent, OrderEvent

MONDAY = datetime.fromisoformat("2026-11-23T00:00:00-08:00")  # Amazon US days are Pacific


def order(event_id: str, at: datetime, amount: str, store: str = "us-1") -> OrderEvent:
    return OrderEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": at,
            "platform": "amazon",
            "marketplace": "US",
            "store_id": store,
            "order_id": event_id,
            "status": "placed",
            "lines": [
                {"sku": "A", "quantity": 1, "unit_price": {"amount": amount, "currency": "USD"}}
            ],
        }
    )


def pipeline(rules: str) -> Engine:
    return Engine(RuleSet(load_text(rules, "rules.yaml")))


def feed(pipe: Engine, events: list[Event]) -> list[Alert]:
    """Each event its own message, as a worker reads single-event messages."""
    return pipe.process_events(events)


def brief(alerts: list[Alert]) -> list[tuple[str, str, str, str]]:
    return [(a.rule, a.status, a.labels["store"], a.at.strftime("%d %H:%M")) for a in alerts]


BASELINE = """\
rules:
  - name: gmv-drop
    kpi: gmv
    by: [store]
    baseline: {%s}
    thresholds:
      critical: "< 60%%"
    message:
      en: "{scope}: GMV {value} of usual ({baseline})"
"""


def usual_days(days: list[int]) -> list[Event]:
    """One 1,000 USD order at 10:00 on each of the given days before MONDAY."""
    return [
        order(f"past-{d}", MONDAY - timedelta(days=d) + timedelta(hours=10), "1000") for d in days
    ]


def test_gmv_down_against_the_same_weekday_of_past_weeks() -> None:
    pipe = pipeline(BASELINE % "weeks: 3")
    alerts = feed(
        pipe, [*usual_days([21, 14, 7]), order("today", MONDAY + timedelta(hours=12), "200")]
    )
    # At noon the usual GMV so far is half of 1,000 USD; 200 is 40% of it.
    assert brief(alerts) == [("gmv-drop", "firing", "us-1", "23 12:00")]
    assert alerts[0].messages["en"] == (
        "platform=amazon marketplace=US store=us-1: GMV 40.00% of usual (500.00 USD)"
    )


def test_gmv_near_usual_does_not_fire() -> None:
    pipe = pipeline(BASELINE % "weeks: 3")
    events = [*usual_days([21, 14, 7]), order("today", MONDAY + timedelta(hours=12), "400")]
    assert feed(pipe, events) == []


def test_other_weekdays_are_not_the_usual_of_a_monday() -> None:
    pipe = pipeline(BASELINE % "weeks: 3")
    events = [*usual_days([20, 13, 6]), order("today", MONDAY + timedelta(hours=12), "10")]
    assert feed(pipe, events) == []  # no past Monday: nothing to compare with


def test_trailing_average_of_days() -> None:
    pipe = pipeline(BASELINE % "days: 7")
    events = [*usual_days([7, 6, 5, 4, 3, 2, 1]), order("t", MONDAY + timedelta(hours=18), "300")]
    assert [a.status for a in feed(pipe, events)] == ["firing"]  # 300 of 750 is 40%


SILENT = """\
calendars:
  business-hours:
    hours: 09:00-18:00
rules:
  - name: silent-feed
    kpi: orders
    by: [store]
    no_data: {after: 2h, during: business-hours}
"""


def test_a_store_silent_for_two_hours_in_business_hours_fires_then_resolves() -> None:
    pipe = pipeline(SILENT)
    nine = MONDAY + timedelta(hours=9)
    events: list[Event] = [order("a1", nine, "10"), order("b1", nine, "10", store="us-2")]
    # us-2 keeps selling every 20 minutes until noon; us-1 says nothing until 12:30.
    events += [order(f"b{k}", nine + timedelta(minutes=20 * k), "10", "us-2") for k in range(2, 10)]
    events.append(order("a2", nine + timedelta(hours=3, minutes=30), "10"))
    events.append(order("b99", nine + timedelta(hours=3, minutes=31), "10", store="us-2"))
    # Silence shows in whole clock hours: the 09:00 hour counts until 11:59 has passed.
    assert brief(feed(pipe, events)) == [
        ("silent-feed", "firing", "us-1", "23 12:00"),
        ("silent-feed", "resolved", "us-1", "23 12:30"),
    ]


def test_silence_outside_business_hours_is_not_judged() -> None:
    pipe = pipeline(SILENT)
    evening = MONDAY + timedelta(hours=17, minutes=30)
    events = [order("a1", evening, "10")] + [
        order(f"b{k}", evening + timedelta(minutes=30 * k), "10", "us-2") for k in range(1, 10)
    ]
    assert feed(pipe, events) == []


def test_a_replay_judges_silence_at_the_whole_hours_its_events_pass() -> None:
    from streams.embedded import replay
    from streams.events import RawRecord, encode

    nine = MONDAY + timedelta(hours=9)
    events = [order("a1", nine, "10"), order("b1", nine + timedelta(hours=3), "10", "us-2")]
    records = [RawRecord(source=f"t:{n}", value=encode(e)) for n, e in enumerate(events)]
    seen: list[Alert] = []
    replay(records, RuleSet(load_text(SILENT, "r.yaml")), seen.append)
    assert brief(seen) == [("silent-feed", "firing", "us-1", "23 12:00")]


def test_no_data_rule_checks() -> None:
    import pytest

    from rules.errors import ConfigError

    bad = SILENT.replace("kpi: orders", "kpi: acos").replace("by: [store]", "by: [store, sku]")
    with pytest.raises(ConfigError) as caught:
        load_text(bad, "r.yaml")
    assert [p.message for p in caught.value.problems] == [
        "rule 'silent-feed': no_data counts orders or units or clicks or impressions or "
        "feed_syncs, not acos",
        "rule 'silent-feed': no_data watches one store's feed; write by: [store]",
    ]


def stock(event_id: str, at: datetime, available: int) -> InventoryEvent:
    data: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": at,
        "platform": "amazon",
        "marketplace": "US",
        "store_id": "us-1",
        "sku": "A",
        "warehouse": "fba",
        "available": available,
        "as_of": at,
    }
    return InventoryEvent.model_validate(data)


def test_stockout_forecast_in_days_of_cover() -> None:
    pipe = pipeline(
        "rules:\n  - name: low-cover\n    kpi: days_of_cover\n    by: [store, sku]\n"
        '    thresholds: {warning: "< 7d", critical: "< 3d"}\n'
    )
    sales = [order(f"o{d}", MONDAY - timedelta(days=d, hours=-10), "10") for d in range(6)]
    alerts = feed(pipe, [stock("s1", MONDAY - timedelta(days=7), 100), *sales])
    alerts += feed(pipe, [stock("s2", MONDAY + timedelta(hours=11), 5)])
    # 6 units in 7 days: about 0.86 a day; 5 left cover about 5.8 days.
    assert [(a.severity, a.status) for a in alerts] == [("warning", "firing")]
