"""The simulator: deterministic, valid, and the incidents it injects are in its output."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.simulator import MARKETS, Incident, simulate
from streams.cli import main
from streams.events import AdSpendEvent, Event, InventoryEvent, OrderEvent, decode, encode
from streams.windows import marketplace_zone

CaptureBytes = pytest.CaptureFixture[bytes]

START = datetime(2026, 11, 20, tzinfo=UTC)


def test_same_seed_same_bytes() -> None:
    first = [encode(e) for e in simulate(START, hours=6, seed=3)]
    second = [encode(e) for e in simulate(START, hours=6, seed=3)]
    assert first == second
    assert first != [encode(e) for e in simulate(START, hours=6, seed=4)]


def test_every_event_passes_the_contract_and_ids_are_unique() -> None:
    events = list(simulate(START, hours=24))
    assert [decode(encode(e), "sim") for e in events] == events
    assert len({e.event_id for e in events}) == len(events)
    assert {e.type for e in events} == {"order", "ad_spend", "inventory"}
    assert events == sorted(events, key=lambda e: e.occurred_at)


def test_stockout_incident_reaches_zero() -> None:
    stock = [
        e
        for e in simulate(START, hours=48)
        if isinstance(e, InventoryEvent) and e.store_id == "amazon-us-01" and e.sku == "SKU-000"
    ]
    assert stock[0].available > 0
    assert stock[-1].available == 0


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        list(simulate(datetime(2026, 11, 20), hours=1))  # noqa: DTZ001


def _run(
    hours: int, stores: int = 4, rate: float = 0.0, seed: int = 5
) -> tuple[list[Event], list[Incident]]:
    incidents: list[Incident] = []
    events = list(
        simulate(
            START,
            hours=hours,
            stores=stores,
            seed=seed,
            incident_rate=rate,
            showcase=False,
            on_incident=incidents.append,
        )
    )
    return events, incidents


def test_market_zones_are_the_engines_day_zones() -> None:
    for market in MARKETS:
        assert marketplace_zone(market.platform, market.marketplace).key == market.zone


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    # Ids come from the records (store, order, status; campaign and hour), not from a counter.
    short = {e.event_id: e for e in _run(12)[0]}
    longer = [e for e in _run(24)[0] if e.occurred_at < START + timedelta(hours=11)]
    assert len(longer) > 100
    assert all(short[e.event_id] == e for e in longer)


def test_orders_follow_local_hours_and_weekdays() -> None:
    events, _ = _run(24 * 14, stores=8)
    by_hour: Counter[int] = Counter()
    by_weekend: Counter[bool] = Counter()
    for e in events:
        if isinstance(e, OrderEvent) and e.status == "placed" and e.platform == "shopee":
            local = e.occurred_at.astimezone(ZoneInfo("Asia/Singapore"))
            by_hour[local.hour] += 1
            by_weekend[local.weekday() >= 5] += 1
    assert by_hour[20] > 3 * by_hour[3]  # the evening peak, the night trough, in local time
    assert by_weekend[True] / 4 > 1.1 * by_weekend[False] / 10  # Shopee sells more on weekends
    assert {e.marketplace for e in events} == {"US", "JP", "MY", "SG"}
    assert {e.platform for e in events} >= {"amazon", "shopee", "tiktok", "shopify", "walmart"}


def test_stock_is_reordered_arrives_as_inbound_then_available_and_never_runs_out() -> None:
    events, _ = _run(24 * 21, stores=2)
    stock = [e for e in events if isinstance(e, InventoryEvent)]
    assert min(e.available for e in stock) > 0
    sku = [e for e in stock if (e.store_id, e.sku) == ("amazon-us-01", "SKU-000")]
    arrivals = [b for a, b in itertools.pairwise(sku) if b.available > a.available]
    assert arrivals
    assert all(a.inbound > 0 for a, b in itertools.pairwise(sku) if b in arrivals)
    cancelled = {e.status for e in events if isinstance(e, OrderEvent)}
    assert cancelled == {"placed", "cancelled", "returned"}


def test_incidents_are_deterministic_and_rate_zero_disables_them() -> None:
    _, first = _run(24 * 6, rate=1.0)
    _, second = _run(24 * 6, rate=1.0)
    assert first == second
    assert len(first) >= 4
    assert not _run(24 * 6, rate=0.0)[1]
    record = first[0].to_json()
    assert set(record) == {"kind", "store_id", "sku", "campaign_id", "factor", "start", "end"}


def _incident(kind: str, hours: int = 24 * 8) -> tuple[list[Event], Incident]:
    for seed in range(1, 20):
        events, incidents = _run(hours, rate=1.5, seed=seed)
        found = [i for i in incidents if i.kind == kind and i.end < START + timedelta(hours=hours)]
        if found:
            return events, found[0]
    raise AssertionError(f"no {kind} incident in 20 seeds")


def test_silent_feed_drops_every_event_of_its_store() -> None:
    events, incident = _incident("silent_feed")
    store = [e for e in events if e.store_id == incident.store_id]
    assert not [e for e in store if incident.start <= e.occurred_at < incident.end]
    assert [e for e in store if e.occurred_at >= incident.end]  # and the feed comes back
    local = incident.start.astimezone(ZoneInfo(_zone(incident.store_id)))
    assert 8 <= local.hour < 16


def test_sales_cliff_cuts_the_stores_orders() -> None:
    events, incident = _incident("sales_cliff")
    week = timedelta(days=7)

    def orders(start: datetime, end: datetime) -> int:
        return sum(
            1
            for e in events
            if isinstance(e, OrderEvent)
            and e.status == "placed"
            and e.store_id == incident.store_id
            and start <= e.occurred_at < end
        )

    during = orders(incident.start, incident.end)
    usual = orders(incident.start - week, incident.end - week)
    assert incident.factor is not None
    assert during < (incident.factor + 0.2) * usual


def test_acos_spike_raises_spend_and_sinks_ad_sales() -> None:
    events, incident = _incident("acos_spike")

    def acos(start: datetime, end: datetime) -> Decimal:
        ads = [
            e
            for e in events
            if isinstance(e, AdSpendEvent)
            and e.campaign_id == incident.campaign_id
            and start <= e.interval_start < end
        ]
        return sum(e.spend.amount for e in ads) / sum(e.attributed_sales.amount for e in ads)

    before = acos(incident.start - timedelta(days=3), incident.start)
    assert acos(incident.start, incident.end) > 5 * before


def test_stockout_sells_out_and_is_restocked_only_after_the_end() -> None:
    events, incident = _incident("stockout")
    stock = [
        e
        for e in events
        if isinstance(e, InventoryEvent)
        and (e.store_id, e.sku) == (incident.store_id, incident.sku)
    ]
    during = [e for e in stock if incident.start <= e.as_of < incident.end]
    assert during[-1].available == 0
    assert all(e.inbound == 0 for e in during)
    assert any(e.available > 0 for e in stock if e.as_of > incident.end)
    sold_out_ads = [
        e
        for e in events
        if isinstance(e, AdSpendEvent)
        and e.sku == incident.sku
        and e.store_id == incident.store_id
        and during[-1].as_of <= e.interval_start < incident.end
    ]
    assert not sold_out_ads  # no ads are served for a listing that cannot sell


def _zone(store_id: str) -> str:
    platform, marketplace = store_id.split("-")[:2]
    return marketplace_zone(platform, marketplace.upper()).key


def test_memory_does_not_grow_with_hours() -> None:
    def peak(hours: int) -> int:
        tracemalloc.start()
        for _ in simulate(START, hours=hours, stores=2, incident_rate=0.5):
            pass
        high = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return high

    assert peak(24 * 20) < 2 * peak(24 * 2)


def test_cli_simulate_writes_the_incidents(tmp_path: Path, capsysbinary: CaptureBytes) -> None:
    out = tmp_path / "incidents.jsonl"
    argv = ["simulate", "--start", START.isoformat(), "--hours", "72", "--incidents", str(out)]
    assert main([*argv, "--incident-rate", "2"]) == 0
    events = capsysbinary.readouterr().out.splitlines()
    incidents = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [i["kind"] for i in incidents]
    showcase = {"kind": "stockout", "store_id": "amazon-us-01", "sku": "SKU-000"}
    assert (
        next(i for i in incidents if i.items() >= showcase.items())["start"]
        == (START + timedelta(hours=6)).isoformat()
    )  # the demo's own stockout, among random incidents
    assert len(kinds) > 2
    assert set(kinds) <= {"stockout", "acos_spike", "silent_feed", "sales_cliff"}
    assert events
    assert all(datetime.fromisoformat(i["end"]).tzinfo for i in incidents)
