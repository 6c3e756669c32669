"""What was already sent, by idempotency key, kept for the dedupe window; and, per fingerprint,
the time of the newest transition sent, so that a late re-send never lands out of order.

Alerts are read at least once: after a crash between a send and the offset commit, the same
transitions come again, and the ledger says they were sent. Keys live in Redis so that the
worker taking over a partition knows what its predecessor sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

from rules.alerts import Alert


class Ledger(Protocol):
    async def unsent(self, lane: str, keys: Sequence[str]) -> list[str]:
        """The keys not yet sent through `lane`, in the given order."""

    async def record(self, lane: str, alerts: Sequence[Alert], ttl: float) -> None:
        """Remember that these transitions were sent through `lane`, for `ttl` seconds."""

    async def newest(self, lane: str, fingerprints: Sequence[str]) -> dict[str, float]:
        """Per fingerprint, the time (epoch seconds) of the newest transition sent through
        `lane` within the dedupe window; fingerprints with none are left out."""


def _newest_of(alerts: Sequence[Alert]) -> dict[str, float]:
    newest: dict[str, float] = {}
    for alert in alerts:
        at = alert.at.timestamp()
        newest[alert.fingerprint] = max(at, newest.get(alert.fingerprint, at))
    return newest


class RedisLedger:
    def __init__(self, redis: Redis, namespace: str = "kpiwatch:") -> None:
        self._redis = redis
        self._namespace = namespace

    def _key(self, lane: str, key: str) -> str:
        return f"{self._namespace}sent:{lane}:{key}"

    def _newest_key(self, lane: str) -> str:
        return f"{self._namespace}newest:{lane}"

    async def unsent(self, lane: str, keys: Sequence[str]) -> list[str]:
        if not keys:
            return []
        seen = await self._redis.mget([self._key(lane, k) for k in keys])
        return [k for k, mark in zip(keys, seen, strict=True) if mark is None]

    async def record(self, lane: str, alerts: Sequence[Alert], ttl: float) -> None:
        if not alerts:
            return
        newest = _newest_of(alerts)
        ttl_ms = max(1, int(ttl * 1000))
        async with self._redis.pipeline(transaction=False) as pipe:
            for alert in alerts:
                pipe.set(self._key(lane, alert.key), b"1", px=ttl_ms)
            # One sorted set per lane, scored by event time; GT keeps the newest. Entries older
            # than the window (by the newest event time seen) are dropped with it.
            pipe.zadd(self._newest_key(lane), newest, gt=True)
            pipe.zremrangebyscore(self._newest_key(lane), "-inf", max(newest.values()) - ttl)
            pipe.pexpire(self._newest_key(lane), ttl_ms)
            await pipe.execute()

    async def newest(self, lane: str, fingerprints: Sequence[str]) -> dict[str, float]:
        if not fingerprints:
            return {}
        scores = await self._redis.zmscore(self._newest_key(lane), list(fingerprints))
        return {f: s for f, s in zip(fingerprints, scores, strict=True) if s is not None}


class MemoryLedger:
    """The same for one process (embedded runtime, tests)."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}
        self._newest: dict[tuple[str, str], float] = {}

    async def unsent(self, lane: str, keys: Sequence[str]) -> list[str]:
        now = time.monotonic()
        return [k for k in keys if self._until.get((lane, k), 0.0) <= now]

    async def record(self, lane: str, alerts: Sequence[Alert], ttl: float) -> None:
        until = time.monotonic() + ttl
        self._until.update({(lane, a.key): until for a in alerts})
        for fingerprint, at in _newest_of(alerts).items():
            slot = (lane, fingerprint)
            self._newest[slot] = max(at, self._newest.get(slot, at))

    async def newest(self, lane: str, fingerprints: Sequence[str]) -> dict[str, float]:
        return {f: self._newest[lane, f] for f in fingerprints if (lane, f) in self._newest}
