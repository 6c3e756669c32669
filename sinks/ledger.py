"""What was already sent, by idempotency key, kept for the dedupe window.

Alerts are read at least once: after a crash between a send and the offset commit, the same
transitions come again, and the ledger says they were sent. Keys live in Redis so that the
worker taking over a partition knows what its predecessor sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis


class Ledger(Protocol):
    async def unsent(self, lane: str, keys: Sequence[str]) -> list[str]:
        """The keys not yet sent through `lane`, in the given order."""

    async def record(self, lane: str, keys: Sequence[str], ttl: float) -> None:
        """Remember that these keys were sent through `lane`, for `ttl` seconds."""


class RedisLedger:
    def __init__(self, redis: Redis, namespace: str = "kpiwatch:") -> None:
        self._redis = redis
        self._namespace = namespace

    def _key(self, lane: str, key: str) -> str:
        return f"{self._namespace}sent:{lane}:{key}"

    async def unsent(self, lane: str, keys: Sequence[str]) -> list[str]:
        if not keys:
            return []
        seen = await self._redis.mget([self._key(lane, k) for k in keys])
        return [k for k, mark in zip(keys, seen, strict=True) if mark is None]

    async def record(self, lane: str, keys: Sequence[str], ttl: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(self._key(lane, key), b"1", px=max(1, int(ttl * 1000)))
            await pipe.execute()


class MemoryLedger:
    """The same for one process (embedded runtime, tests)."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    async def unsent(self, lane: str, keys: Sequence[str]) -> list[str]:
        now = time.monotonic()
        return [k for k in keys if self._until.get((lane, k), 0.0) <= now]

    async def record(self, lane: str, keys: Sequence[str], ttl: float) -> None:
        until = time.monotonic() + ttl
        self._until.update({(lane, k): until for k in keys})
