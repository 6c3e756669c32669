"""streams.app.Inputs: which input messages a batch processes, and when the consumer is sent back.

The consumer here is a stand-in that records seeks and answers the topic's first offset: what is
under test is Inputs' bookkeeping; the real consumer is exercised in tests/integration.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from streams.app import Inputs


@dataclass
class FakeConsumer:
    first: int = 0
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    asked: int = 0

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        self.asked += 1
        return {tp: self.first for tp in tps}

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class FakeApp:
    consumer: FakeConsumer


@dataclass
class Msg:
    topic: str
    offset: int


@dataclass
class Ev:
    message: Msg


def events(*offsets: int, topic: str = "events") -> list[Any]:
    return [Ev(Msg(topic, o)) for o in offsets]


def offsets(kept: list[Any]) -> list[int]:
    return [e.message.offset for e in kept]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_held_messages_are_skipped_and_the_rest_kept_in_order() -> None:
    inputs = Inputs(FakeApp(FakeConsumer()))
    kept, skipped = run(inputs.admit(0, events(3, 4, 5, 6), {"events": 5}))
    assert offsets(kept) == [5, 6]
    assert skipped == 2


def test_a_partition_the_state_holds_nothing_of_starts_at_the_topics_first_offset() -> None:
    consumer = FakeConsumer(first=0)
    inputs = Inputs(FakeApp(consumer))
    # Messages 0..2 were fetched and dropped while Faust recovered: the batch starts at 3.
    kept, _ = run(inputs.admit(1, events(3, 4), {}))
    assert kept == []
    assert consumer.seeks == [(TP("events", 1), 0)]
    kept, _ = run(inputs.admit(1, events(0, 1, 2, 3), {}))
    assert offsets(kept) == [0, 1, 2, 3]
    assert consumer.asked == 1  # asked once per partition


def test_a_topic_whose_start_is_gone_is_read_from_its_first_offset_without_a_seek() -> None:
    consumer = FakeConsumer(first=100)
    inputs = Inputs(FakeApp(consumer))
    kept, skipped = run(inputs.admit(0, events(100, 101), {}))
    assert offsets(kept) == [100, 101]
    assert (skipped, consumer.seeks) == (0, [])


def test_the_seek_is_repeated_while_messages_past_the_gap_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("streams.app.time.monotonic", lambda: clock[0])
    consumer = FakeConsumer()
    inputs = Inputs(FakeApp(consumer))
    held = {"events": 10}
    run(inputs.admit(0, events(20), held))
    run(inputs.admit(0, events(21), held))  # within RESEEK: no second seek
    assert len(consumer.seeks) == 1
    clock[0] += Inputs.RESEEK
    run(inputs.admit(0, events(22), held))  # Faust raised its read offset again: seek again
    assert consumer.seeks == [(TP("events", 0), 10)] * 2
    kept, _ = run(inputs.admit(0, events(10, 11), held))
    assert offsets(kept) == [10, 11]


def test_a_gap_that_stays_past_the_wait_is_taken_as_gone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("streams.app.time.monotonic", lambda: clock[0])
    inputs = Inputs(FakeApp(FakeConsumer()))
    held = {"events": 10}
    assert run(inputs.admit(0, events(20), held))[0] == []
    clock[0] += Inputs.GAP_WAIT
    kept, _ = run(inputs.admit(0, events(20, 21), held))
    assert offsets(kept) == [20, 21]
    assert "offsets 10..19 are gone" in caplog.text
