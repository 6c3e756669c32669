"""Atomic batches on a plain compacted changelog: what makes a kill -9 harmless.

A batch changes many keys, and Kafka makes no promise that a process killed while they are
being written leaves all or none of them. It does promise order within one partition: what a
broker has from one producer in one partition is a prefix of what was sent. So each batch of a
partition is written to its changelog partition as

    redo parts      {p} redo {n}: every key the batch changes and its new value
    marker          {p} meta: batch number, input positions, outputs (alerts, rollup messages,
                    dead letters), how many redo parts
    keys            each changed key (what compaction keeps, and recovery reads)

and only then are its outputs sent and its input offsets acknowledged (and then `{p} sent`
records that the outputs arrived, with the next batch's writes). Recovering a partition
(`recover`) finds one of three states: the marker is older than the redo parts (the batch was
cut before its marker: none of its keys were written, as they come after; nothing to do), the
marker matches the redo parts (the batch was cut among its keys: the redo parts hold them all,
written again), or the batch is whole. In every case the state is that of whole batches, the
marker says which input offsets it holds (so re-read messages are skipped, not counted twice),
and the marker's outputs are sent again unless `sent` says they arrived (a crash between the two
repeats them: an alert sink and the rollup side drop what they had).

No Kafka transaction is needed, and readers of the changelog need nothing special.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import pydantic_core

from streams.state import META, REDO, SENT, StateStore, decode_value, encode_value, state_key

# A redo part stays well under Kafka's 1 MiB message limit (topics are made with a larger
# max.message.bytes, but the producer's max_request_size is 1 MiB by default).
PART_BYTES: Final = 512 * 1024


class Changelog(Protocol):
    """Where a partition's state goes: `send` queues one record for one changelog partition
    (in order), `flush` returns once every queued record is acknowledged by the broker."""

    async def send(self, partition: int, key: str, value: bytes | None) -> None: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True)
class Recovered:
    """What `recover` found: whether it rewrote a cut batch, and the last batch's outputs."""

    rolled_forward: int
    outputs: dict[str, Any]


def redo_parts(seq: int, changes: Sequence[tuple[str, bytes | None]]) -> Iterator[bytes]:
    """The batch's changes as JSON documents `[seq, [[key, value], ...]]` of at most about
    PART_BYTES each (values embedded as they are: they are JSON already)."""
    head = b"[" + str(seq).encode() + b",["
    part: list[bytes] = []
    size = 0
    for key, value in changes:
        entry = b"[" + pydantic_core.to_json(key) + b"," + (value or b"null") + b"]"
        if part and size + len(entry) > PART_BYTES:
            yield head + b",".join(part) + b"]]"
            part, size = [], 0
        part.append(entry)
        size += len(entry) + 1
    yield head + b",".join(part) + b"]]"


async def write_batch(
    store: StateStore,
    partition: int,
    changelog: Changelog,
    meta: dict[str, Any],
    outputs: dict[str, Any],
) -> list[tuple[str, bytes | None]]:
    """Queue the partition's batch on the changelog in the order that makes it atomic, and
    commit it to the store's backing mapping. The caller flushes the changelog before sending
    `outputs` anywhere else and before acknowledging the batch's input."""
    meta_key = state_key(partition, META)
    meta["out"] = outputs
    store.put(meta_key, meta)
    data = store.changes(skip=meta_key)
    parts = list(redo_parts(meta["seq"], data))
    meta["parts"] = len(parts)
    marker = encode_value(meta)
    for number, part in enumerate(parts):
        await changelog.send(partition, state_key(partition, REDO, str(number)), part)
    await changelog.send(partition, meta_key, marker)
    for key, value in data:
        await changelog.send(partition, key, value)
    written = [*data, (meta_key, marker)]
    store.commit(written)
    return written


async def recover(store: StateStore, partition: int, changelog: Changelog) -> Recovered:
    """Bring a partition whose table was just recovered from its changelog to whole batches
    (see the module docstring); returns the last batch's outputs, to be sent again."""
    meta_raw = store.backing.get(state_key(partition, META))
    if meta_raw is None:
        return Recovered(0, {})
    meta = decode_value(meta_raw)
    rolled = 0
    parts = [store.backing.get(state_key(partition, REDO, str(n))) for n in range(meta["parts"])]
    documents = [decode_value(part) for part in parts if part is not None]
    if len(documents) == meta.get("parts", 0) and all(d[0] == meta["seq"] for d in documents):
        for document in documents:
            for key, value in document[1]:
                raw = None if value is None else pydantic_core.to_json(value)
                held = store.backing.get(key)
                if (None if held is None else decode_value(held)) == value:
                    continue  # written before the cut
                await changelog.send(partition, key, raw)
                if raw is None:
                    store.backing.pop(key, None)
                else:
                    store.backing[key] = raw
                rolled += 1
        await changelog.flush()
    store.forget(list(store.all_keys()))
    sent = store.backing.get(state_key(partition, SENT))
    if sent is not None and decode_value(sent) == meta["seq"]:
        return Recovered(rolled, {})
    return Recovered(rolled, meta.get("out") or {})


async def mark_sent(store: StateStore, partition: int, changelog: Changelog, seq: int) -> None:
    """Record that the outputs of batch `seq` arrived (queued: the next flush writes it)."""
    value = encode_value(seq)
    store.backing[state_key(partition, SENT)] = value
    await changelog.send(partition, state_key(partition, SENT), value)


OutputSender = Callable[[dict[str, Any]], Awaitable[None]]
