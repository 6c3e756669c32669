"""The simulator: deterministic, valid, and the incidents it injects are in its output."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.simulator import simulate
from streams.events import InventoryEvent, decode, encode

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
