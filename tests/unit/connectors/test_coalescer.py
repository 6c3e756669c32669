"""Push deliveries of one store within the linger go out as one message; each caller returns
once its message is sent, or with what sending raised."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from connectors.kafka import Coalescer
from streams.events import Event, InventoryEvent


def stock(store: str, n: int) -> InventoryEvent:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    return InventoryEvent(
        event_id=f"{store}-{n}",
        occurred_at=at,
        platform="shopify",
        marketplace="US",
        store_id=store,
        sku=f"S{n}",
        warehouse="own",
        available=n,
        as_of=at,
    )


async def test_a_stores_pushes_within_the_linger_share_a_message() -> None:
    sent: list[list[str]] = []

    async def send(group: Sequence[Event]) -> None:
        sent.append([e.event_id for e in group])

    coalescer = Coalescer(send, linger=0.05)
    await asyncio.gather(
        coalescer.submit([stock("a", 1)]),
        coalescer.submit([stock("b", 1)]),
        coalescer.submit([stock("a", 2), stock("a", 3)]),
    )
    assert sorted(sent) == [["a-1", "a-2", "a-3"], ["b-1"]]
    await coalescer.submit([stock("a", 4)])  # after the flush: a message of its own
    assert sent[-1] == ["a-4"]


async def test_every_caller_of_a_failed_message_hears_of_it() -> None:
    async def send(group: Sequence[Event]) -> None:
        raise ConnectionError("broker gone")

    coalescer = Coalescer(send, linger=0.01)
    results = await asyncio.gather(
        coalescer.submit([stock("a", 1)]), coalescer.submit([stock("a", 2)]), return_exceptions=True
    )
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    with pytest.raises(ConnectionError):
        await coalescer.submit([stock("a", 3)])
