"""Feed health in the engine: connectors report their passes (FeedEvent), so that rules tell
"the feed is broken" from "the store sold nothing", and silence is judged only once a store's
feed has been watched for the rule's `after:`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rules.alerts import Alert
from rules.load import RuleSet, load_paths, load_text
from streams.embedded import Engine, reader
from streams.events import Event, FeedEvent, InventoryEvent, OrderEvent, decode, encode
from streams.query import kpi_rows

MONDAY = datetime.fromisoformat("2026-11-23T00:00:00-08:00")  # Amazon US days are Pacific
NINE = MONDAY + timedelta(hours=9)
FEEDS = Path(__file__).parents[3] / "rules" / "library" / "feeds.yaml"

SILENT = """\
calendars:
  business-hours:
    hours: 09:00-18:00
rules:
  - name: silent-feed
    kpi: orders
    by: [store]
    no_data: {after: 2h, during: business-hours}
  - name: feed-broken
    kpi: feed_syncs
    by: [store]
    no_data: {after: 1h, severity: critical}
  - name: feed-failing
    kpi: feed_failures
    by: [store]
    window: 1h
    thresholds:
      warning: ">= 3"
"""


def base(store: str, event_id: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": at,
        "platform": "amazon",
        "marketplace": "US",
        "store_id": store,
    }


def order(event_id: str, at: datetime, store: str = "us-2") -> OrderEvent:
    line = {"sku": "A", "quantity": 1, "unit_price": {"amount": "10", "currency": "USD"}}
    return OrderEvent.model_validate(
        {**base(store, event_id, at), "order_id": event_id, "status": "placed", "lines": [line]}
    )


def stock(event_id: str, at: datetime, store: str = "us-1") -> InventoryEvent:
    return InventoryEvent.model_validate(
        {**base(store, event_id, at), "sku": "A", "warehouse": "fba", "available": 5, "as_of": at}
    )


def passed(
    at: datetime, status: str = "ok", store: str = "us-1", feed: str = "orders"
) -> FeedEvent:
    return FeedEvent.model_validate(
        {
            **base(store, f"feed:{store}:{feed}:{at.isoformat()}", at),
            "feed": feed,
            "status": status,
            "reason": None if status == "ok" else "getOrders: 403 Unauthorized",
        }
    )


def busy_neighbour(until_hours: float, every_minutes: int = 20) -> list[Event]:
    """us-2 sells every 20 minutes from 09:00: it moves event time on for everyone."""
    count = int(until_hours * 60 / every_minutes)
    return [order(f"n{k}", NINE + timedelta(minutes=every_minutes * k)) for k in range(count + 1)]


def timeline(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.occurred_at)


def brief(alerts: list[Alert]) -> list[tuple[str, str, str, str]]:
    return [(a.rule, a.status, a.labels["store"], a.at.strftime("%d %H:%M")) for a in alerts]


def run(events: list[Event], rules: str = SILENT) -> list[Alert]:
    return Engine(RuleSet(load_text(rules, "rules.yaml"))).process_events(timeline(events))


def every(minutes: int, start: datetime, end: datetime, status: str = "ok") -> list[Event]:
    found: list[Event] = []
    at = start
    while at < end:
        found.append(passed(at, status))
        at += timedelta(minutes=minutes)
    return found


# --- when a feed began ------------------------------------------------------------------


def test_a_store_whose_first_event_came_minutes_ago_is_not_silent() -> None:
    # us-1 appears at 10:50 with a stock snapshot; before the fix the 11:00 tick judged the
    # two hours before it and called a store seen for 10 minutes silent.
    events = [stock("s1", NINE + timedelta(minutes=110)), *busy_neighbour(4.5)]
    alerts = [a for a in run(events) if a.rule == "silent-feed"]
    # Watched from 10:50, it has sold nothing in the two whole hours before 13:00.
    assert brief(alerts) == [("silent-feed", "firing", "us-1", "23 13:00")]


def test_a_first_order_resolves_nothing_it_did_not_fire() -> None:
    events = [stock("s1", NINE + timedelta(minutes=110)), *busy_neighbour(3.5)]
    events.append(order("first", NINE + timedelta(hours=3, minutes=20), store="us-1"))
    assert [a for a in run(events) if a.rule == "silent-feed"] == []


# --- a broken feed is not a quiet store -------------------------------------------------


def selling_until(end: datetime) -> list[Event]:
    """us-1 sells every 20 minutes from 07:00 until `end`."""
    found: list[Event] = []
    at = NINE - timedelta(hours=2)
    while at < end:
        found.append(order(f"u{at:%H%M}", at, "us-1"))
        at += timedelta(minutes=20)
    return found


def test_a_failing_connector_is_a_broken_feed_not_no_orders() -> None:
    # us-1 sells and its orders feed is read fine every 10 minutes until 10:00; from then on
    # every pass fails (an expired token). Before, that was "no orders" at 12:00.
    ten = NINE + timedelta(hours=1)
    events = [
        *selling_until(ten),
        *every(10, NINE - timedelta(hours=2), ten),
        *every(10, ten, ten + timedelta(hours=3), "failed"),
        *busy_neighbour(3.5),
    ]
    alerts = brief(run(events))
    assert not any(rule == "silent-feed" for rule, *_ in alerts)
    assert ("feed-broken", "firing", "us-1", "23 11:00") in alerts
    # The third failure of the 10:00 hour crosses feed-failing's ">= 3".
    assert ("feed-failing", "firing", "us-1", "23 10:20") in alerts


def test_a_healthy_feed_with_no_orders_is_a_quiet_store() -> None:
    ten = NINE + timedelta(hours=1)
    events = [
        *selling_until(ten),
        *every(10, NINE - timedelta(hours=2), NINE + timedelta(hours=3)),
        *busy_neighbour(3.5),
    ]
    # The feed was read fine all along: the two hours before 12:00 really had no orders.
    assert brief(run(events)) == [("silent-feed", "firing", "us-1", "23 12:00")]


def test_a_connector_that_stops_reporting_is_a_broken_feed_once_its_hour_is_up() -> None:
    events = [
        *selling_until(NINE + timedelta(minutes=30)),
        *every(10, NINE, NINE + timedelta(minutes=30)),
        *busy_neighbour(3.5),
    ]
    alerts = brief(run(events))
    # Its last pass was at 09:20: the 09:00 hour counts until the 11:00 tick.
    assert ("feed-broken", "firing", "us-1", "23 11:00") in alerts
    # Nothing read since: "no orders" would be a guess, so silent-feed holds its tongue.
    assert not any(rule == "silent-feed" for rule, *_ in alerts)


def test_the_next_good_pass_resolves_a_broken_feed() -> None:
    events = [
        *every(10, NINE, NINE + timedelta(minutes=30)),
        passed(NINE + timedelta(hours=2, minutes=5)),
        *busy_neighbour(2.5),
    ]
    alerts = [a for a in brief(run(events)) if a[0] == "feed-broken"]
    assert alerts == [
        ("feed-broken", "firing", "us-1", "23 11:00"),
        ("feed-broken", "resolved", "us-1", "23 11:05"),
    ]


def test_stores_without_connector_reports_are_judged_as_before() -> None:
    # No feed events at all (a file import, the simulator): feed-broken never judges them.
    events = [stock("s1", NINE), *busy_neighbour(3.5)]
    assert brief(run(events)) == [("silent-feed", "firing", "us-1", "23 11:00")]


# --- counting --------------------------------------------------------------------------


def test_feed_passes_are_kpis_counted_once_and_are_no_sales() -> None:
    ok = passed(NINE + timedelta(minutes=5))
    events = [ok, ok, passed(NINE + timedelta(minutes=15), "failed"), order("o1", NINE, "us-1")]
    engine = Engine(RuleSet(load_text(SILENT, "rules.yaml")))
    engine.process_events(events)
    at = (NINE + timedelta(minutes=30)).astimezone(UTC)
    rows = kpi_rows(reader(engine.state), "store", "1h", at)
    values = {row["scope"]["store"]: row["values"] for row in rows}
    assert values["us-1"]["feed_syncs"] == "1"
    assert values["us-1"]["feed_failures"] == "1"
    assert values["us-1"]["orders"] == "1"
    assert values["us-1"]["gmv"] == "10.00"
    # Stores roll up into their marketplace: passes are no sales, orders are.
    market = kpi_rows(reader(engine.state), "marketplace", "1d", at)
    assert market[0]["values"]["orders"] == "1"
    assert "feed_syncs" not in market[0]["values"]


def test_a_feed_event_travels_as_json() -> None:
    event = passed(NINE, "failed")
    assert decode(encode(event), "t:1") == event


def test_the_library_says_feed_broken_and_silent_order_feed_apart() -> None:
    rules = load_paths([FEEDS.parent])
    assert {"silent-order-feed", "feed-broken", "feed-failing"} <= {r.name for r in rules.rules}


def test_a_twice_daily_ads_feed_is_not_a_broken_feed_between_its_passes() -> None:
    # Amazon Ads reports are read every 12 hours: an hour without an ads pass is normal.
    ads = [passed(NINE - timedelta(hours=2), store="us-1", feed="ads")]
    events = [*ads, *busy_neighbour(4)]
    assert [a for a in run(events) if a.rule == "feed-broken"] == []
