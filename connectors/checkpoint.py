"""Where connectors keep their cursors: Redis in production, a dict in tests and demos."""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rules.errors import ServiceError


class CheckpointStore(Protocol):
    """`ttl` (seconds): a value that is only needed for a while (Marketing Stream's records of
    one hour) is forgotten after it, instead of filling Redis forever."""

    async def load(self, source: str) -> str | None: ...

    async def save(self, source: str, cursor: str, ttl: float | None = None) -> None: ...


class MemoryCheckpoints:
    """Cursors in a dict; `saves` records every save, so tests can see the order of events."""

    def __init__(self) -> None:
        self.cursors: dict[str, str] = {}
        self.saves: list[tuple[str, str]] = []
        self.ttls: dict[str, float] = {}  # the ttl each key was last saved with

    async def load(self, source: str) -> str | None:
        return self.cursors.get(source)

    async def save(self, source: str, cursor: str, ttl: float | None = None) -> None:
        self.cursors[source] = cursor
        self.saves.append((source, cursor))
        if ttl is None:
            self.ttls.pop(source, None)
        else:
            self.ttls[source] = ttl


class RedisCheckpoints:
    """One string key per source (`{prefix}checkpoint:{source}`); SET is atomic, so a crash
    leaves either the old cursor or the new one."""

    def __init__(self, client: aioredis.Redis, prefix: str = "kpiwatch:") -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "kpiwatch:") -> RedisCheckpoints:
        return cls(aioredis.Redis.from_url(url, decode_responses=False), prefix)

    def key(self, source: str) -> str:
        return f"{self._prefix}checkpoint:{source}"

    async def load(self, source: str) -> str | None:
        try:
            value = await self._client.get(self.key(source))
        except RedisError as exc:
            raise ServiceError(f"could not read the checkpoint of {source}: {exc}") from exc
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def save(self, source: str, cursor: str, ttl: float | None = None) -> None:
        expire = None if ttl is None else max(1, int(ttl))
        try:
            await self._client.set(self.key(source), cursor.encode(), ex=expire)
        except RedisError as exc:
            raise ServiceError(f"could not save the checkpoint of {source}: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
