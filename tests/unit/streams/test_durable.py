"""Atomic batches on a plain changelog (streams.durable): a process killed after any prefix of a
batch's changelog records recovers to whole batches, and going on from there gives exactly the
state and the alerts of a run that was never killed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.simulator import simulate
from rules.load import load_default
from streams.durable import PART_BYTES, mark_sent, recover, redo_parts, write_batch
from streams.events import pack
from streams.pipeline import Message, Pipeline
from streams.state import StateStore, decode_value, key_parts

START = datetime(2026, 11, 20, tzinfo=UTC)
Record = tuple[int, str, bytes | None]


class RecordingChangelog:
    """What a changelog partition receives, in order."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send(self, partition: int, key: str, value: bytes | None) -> None:
        self.records.append((partition, key, value))

    async def flush(self) -> None:
        pass


def restore(records: list[Record]) -> dict[str, bytes]:
    """A table recovered from these changelog records (the latest value per key)."""
    table: dict[str, bytes] = {}
    for _, key, value in records:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def batches() -> list[list[Message]]:
    events = simulate(START, hours=30, stores=3, skus=3, showcase=True)
    messages = [Message(group, f"events/0/{n}") for n, group in enumerate(pack(events))]
    third = len(messages) // 3
    return [messages[:third], messages[third : 2 * third], messages[2 * third :]]


async def run_batch(
    pipeline: Pipeline, changelog: RecordingChangelog, batch: list[Message], first: int
) -> list[dict[str, Any]]:
    """One batch as the worker runs it; returns the alerts it sends (after the flush)."""
    output = pipeline.process(batch)
    meta = pipeline.state.meta()
    meta["pos"]["events"] = first + len(batch)
    alerts = [a.model_dump(mode="json") for a in output.alerts]
    await write_batch(pipeline.store, 0, changelog, meta, {"alerts": alerts})
    await mark_sent(pipeline.store, 0, changelog, meta["seq"])
    return alerts


def state_of(table: dict[str, bytes]) -> dict[str, Any]:
    """Everything but the protocol's own keys, decoded."""
    return {
        key: decode_value(value)
        for key, value in table.items()
        if key_parts(key)[1] not in ("meta", "redo", "sent")
    }


async def reference_run() -> tuple[dict[str, Any], list[dict[str, Any]], list[Record]]:
    pipeline = Pipeline(StateStore(), load_default())
    changelog = RecordingChangelog()
    alerts, first = [], 0
    for batch in batches():
        alerts += await run_batch(pipeline, changelog, batch, first)
        first += len(batch)
    return state_of(dict(pipeline.store.backing)), alerts, changelog.records


def keys_of(alerts: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    return {(a["fingerprint"], a["status"], a["severity"], a["at"]) for a in alerts}


def test_a_kill_after_any_changelog_record_recovers_to_the_uncrashed_result() -> None:
    asyncio.run(_kill_everywhere())


async def _kill_everywhere() -> None:
    want_state, want_alerts, _ = await reference_run()
    assert want_alerts, "the showcase stockout must alert, or this test proves little"
    one, two, three = batches()
    # Batch one, whole; batch two cut after every record of its own.
    before = Pipeline(StateStore(), load_default())
    log = RecordingChangelog()
    sent = await run_batch(before, log, one, 0)
    durable = len(log.records)
    await run_batch(before, log, two, len(one))
    cuts = range(durable, len(log.records) + 1)
    assert len(cuts) > 20
    for cut in cuts:
        table = restore(log.records[:cut])
        store = StateStore(table)
        again = RecordingChangelog()
        recovered = await recover(store, 0, again)
        delivered = sent + recovered.outputs.get("alerts", [])
        pipeline = Pipeline(store, load_default())
        done = pipeline.state.meta()["pos"].get("events", 0)
        assert done in (len(one), len(one) + len(two)), cut
        if done == len(one):  # batch two was cut before its marker: none of it is there
            delivered += await run_batch(pipeline, again, two, len(one))
        else:  # its marker is there: every key of it is, from the keys or the redo parts
            delivered += await run_batch(pipeline, again, three[:0], done)
        delivered += await run_batch(pipeline, again, three, len(one) + len(two))
        assert state_of(table) == want_state, f"cut after record {cut}"
        assert keys_of(delivered) == keys_of(want_alerts), f"cut after record {cut}"


def test_redo_parts_stay_small_and_hold_every_change() -> None:
    changes: list[tuple[str, bytes | None]] = [
        (f"0\x1eh\x1es\x1e{n}", b'{"c":{"":{"orders":%d}}}' % n) for n in range(40_000)
    ]
    changes.append(("0\x1ed\x1es\x1e2026-11-20", None))
    parts = list(redo_parts(7, changes))
    assert len(parts) > 1
    assert all(len(part) <= PART_BYTES + 100 for part in parts)
    held = [entry for part in parts for entry in decode_value(part)[1]]
    assert all(decode_value(part)[0] == 7 for part in parts)
    assert [k for k, _ in held] == [k for k, _ in changes]
    assert held[-1][1] is None


@pytest.mark.parametrize("cut_marker", [True, False])
def test_outputs_are_sent_again_only_when_not_known_to_have_arrived(cut_marker: bool) -> None:
    async def run() -> dict[str, Any]:
        pipeline = Pipeline(StateStore(), load_default())
        log = RecordingChangelog()
        one, _, _ = batches()
        output = pipeline.process(one)
        meta = pipeline.state.meta()
        await write_batch(pipeline.store, 0, log, meta, {"alerts": ["a"]})
        if not cut_marker:
            await mark_sent(pipeline.store, 0, log, meta["seq"])
        assert output is not None
        recovered = await recover(StateStore(restore(log.records)), 0, RecordingChangelog())
        return recovered.outputs

    outputs = asyncio.run(run())
    assert outputs == ({"alerts": ["a"]} if cut_marker else {})
