"""Engine state: its key layout, and the store that keeps it as compact JSON.

Both runtimes keep state in a mapping of str keys to bytes: a Faust table (memory store, backed
by a compacted changelog topic) in the worker, a dict in the embedded runtime. Every key starts
with the partition the state belongs to (each store's state lives with the partition its events
come from; each cross-store scope with the rollup partition it hashes to), so a worker can tell
its keys from another's after a rebalance. The separator is ASCII RS, which ids cannot contain
(streams.events.Text); parts of a store key or a scope are joined with ASCII US.

    {p} h {store} {hour}       a store's local clock hour (its start, epoch seconds): the orders
                               placed in it and the ad intervals starting in it (the versioned
                               entities), and the hour's counters per scope of the store
    {p} d {store} {day}        a store's local day: its counters per scope (store, sku, campaign)
    {p} i {store}              a store's stock: per sku and warehouse, the newest snapshot
    {p} a {fingerprint}        one alert's lifecycle (rules.lifecycle)
    {p} meta                   the partition's marker: input positions, event-time progress, its
                               stores, the last batch's outputs (streams.durable)
    {p} redo {n}               the last batch's writes (streams.durable)
    {p} sent                   the last batch whose outputs the broker acknowledged
    {q} r {scope} {day}        a cross-store scope's day: counters per store hour (streams.rollup)

`StateStore` reads values decoded (cached, bounded), collects what a batch changes, and writes
each changed key once when the batch commits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any, Final

import pydantic_core

RS: Final = "\x1e"  # between the parts of a state key
SEP: Final = "\x1f"  # between the labels of a store key or a scope

HOUR: Final = "h"
DAY: Final = "d"
STOCK: Final = "i"
ALERT: Final = "a"
ROLLUP: Final = "r"
META: Final = "meta"
REDO: Final = "redo"
SENT: Final = "sent"

# Decoded values kept for reuse, by the size of their JSON; what falls out is decoded again
# from the bytes when next read. Hot keys (this hour, this day, this week) stay decoded.
DEFAULT_CACHE_BYTES: Final = 256 * 2**20

Backing = MutableMapping[Any, Any]


def state_key(partition: int, *parts: str) -> str:
    return RS.join((str(partition), *parts))


def key_parts(key: str) -> list[str]:
    """[partition, kind, ...] of a state key."""
    return key.split(RS)


def partition_of(key: str) -> int:
    return int(key.split(RS, 1)[0])


def store_key(platform: str, marketplace: str, store: str) -> str:
    return SEP.join((platform, marketplace, store))


def encode_value(value: Any) -> bytes:
    return pydantic_core.to_json(value)


def decode_value(raw: bytes | str) -> Any:
    # cache_strings: the same few counter names and labels recur in every value.
    return pydantic_core.from_json(raw, cache_strings=True)


def marker(store: StateStore, partition: int, fresh: dict[str, Any]) -> dict[str, Any]:
    """A partition's marker (its batch number, input positions, outputs; streams.durable), or
    `fresh` put in place when the partition has none yet."""
    key = state_key(partition, META)
    found = store.get(key)
    if found is None:
        found = fresh
        store.put(key, found)
    return found  # type: ignore[no-any-return]


class StateStore:
    """Decoded, cached access to a mapping of encoded state, with the changes of a batch held
    apart until `commit` (so that a batch can also be thrown away as a whole)."""

    def __init__(self, backing: Backing | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.backing: Backing = backing if backing is not None else {}
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._cached_bytes = 0
        self._cache_limit = cache_bytes
        self._dirty: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        """The value of `key` (None when absent). A value read here may be changed in place;
        `put` it (or `touch` it) to have the change written."""
        if key in self._dirty:
            return self._dirty[key]
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        raw = self.backing.get(key)
        if raw is None:
            return None
        value = decode_value(raw)
        self._remember(key, value, len(raw))
        return value

    def put(self, key: str, value: Any) -> None:
        self._dirty[key] = value

    def delete(self, key: str) -> None:
        self._dirty[key] = None

    def __contains__(self, key: str) -> bool:
        if key in self._dirty:
            return self._dirty[key] is not None
        return key in self._cache or key in self.backing

    @property
    def changed(self) -> int:
        return len(self._dirty)

    def changes(self, skip: str | None = None) -> list[tuple[str, bytes | None]]:
        """Every key the batch changed (but `skip`), encoded (None: deleted), in the order
        first changed."""
        return [
            (k, None if v is None else encode_value(v)) for k, v in self._dirty.items() if k != skip
        ]

    def commit(self, changes: list[tuple[str, bytes | None]] | None = None) -> None:
        """Write the batch's changes (as `changes()` gave them, or encoded now) to the backing
        mapping; the decoded values stay cached."""
        encoded = self.changes() if changes is None else changes
        for key, raw in encoded:
            value = self._dirty.get(key)
            if raw is None:
                self.backing.pop(key, None)
                self._forget(key)
            else:
                self.backing[key] = raw
                self._forget(key)
                self._remember(key, value, len(raw))
        self._dirty.clear()

    def discard(self) -> None:
        """Throw the batch's changes away. Values changed in place were cached objects: they
        are dropped too, and decoded again from the last committed bytes when read."""
        for key in self._dirty:
            self._forget(key)
        self._dirty.clear()

    def forget(self, keys: Iterator[str] | list[str]) -> None:
        """Drop cached values (the backing mapping changed under them, e.g. recovery)."""
        for key in keys:
            self._forget(key)

    def all_keys(self) -> list[str]:
        """Every committed key (a scan: for recovery and queries, never per event)."""
        return [k if isinstance(k, str) else k.decode() for k in list(self.backing.keys())]

    def _remember(self, key: str, value: Any, size: int) -> None:
        if value is None or size > self._cache_limit:
            return
        self._cache[key] = value
        self._sizes[key] = size
        self._cached_bytes += size
        while self._cached_bytes > self._cache_limit and self._cache:
            old, _ = self._cache.popitem(last=False)
            self._cached_bytes -= self._sizes.pop(old)

    def _forget(self, key: str) -> None:
        if self._cache.pop(key, None) is not None:
            self._cached_bytes -= self._sizes.pop(key)
