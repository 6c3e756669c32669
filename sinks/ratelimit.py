"""Per-sink rate limits that hold across every worker: a sliding window log kept in Redis.

One Lua script checks and takes a slot atomically, on Redis's own clock, so workers with
skewed clocks still share one window. A sliding window (not a fixed one) is what the robots
enforce: 20 messages at 0:59 and 20 more at 1:01 would break a "20 a minute" limit.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Final, Protocol

from redis.asyncio import Redis

from sinks.config import RateLimit

# Returns 0 when a slot was taken, else the milliseconds until the oldest slot frees up.
SLIDING_WINDOW: Final = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


def margin(limit: RateLimit) -> float:
    """Extra window, because the robot counts arrivals, not our sends: a first request slowed
    by connection set-up and a later fast one can land closer together than we sent them."""
    return min(0.5, limit.per * 0.1)


class Limiter(Protocol):
    async def try_acquire(self, sink: str, limit: RateLimit) -> float:
        """Take a slot: 0.0, or the seconds to wait before asking again."""


class RedisLimiter:
    def __init__(self, redis: Redis, namespace: str = "kpiwatch:") -> None:
        self._script = redis.register_script(SLIDING_WINDOW)
        self._namespace = namespace

    async def try_acquire(self, sink: str, limit: RateLimit) -> float:
        key = f"{self._namespace}rate:{sink}"
        window_ms = int((limit.per + margin(limit)) * 1000)
        wait_ms = await self._script(keys=[key], args=[limit.messages, window_ms, uuid.uuid4().hex])
        return int(wait_ms) / 1000


class MemoryLimiter:
    """The same window for one process (embedded runtime, tests)."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    async def try_acquire(self, sink: str, limit: RateLimit) -> float:
        now = time.monotonic()
        sent = self._sent.setdefault(sink, deque())
        window = limit.per + margin(limit)
        while sent and sent[0] <= now - window:
            sent.popleft()
        if len(sent) < limit.messages:
            sent.append(now)
            return 0.0
        return max(0.001, sent[0] + window - now)


class OwnSends:
    """This process's own sends per sink, in the same sliding window. Checked before the shared
    window: when Redis is unreachable or has lost its window, each worker still keeps the limit
    on what it sends itself (N workers may then send up to N times the limit)."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def wait(self, sink: str, limit: RateLimit) -> float:
        """0.0 when this process may send now, else the seconds until it may."""
        now = time.monotonic()
        sent = self._sent.setdefault(sink, deque())
        window = limit.per + margin(limit)
        while sent and sent[0] <= now - window:
            sent.popleft()
        return 0.0 if len(sent) < limit.messages else max(0.001, sent[0] + window - now)

    def note(self, sink: str) -> None:
        self._sent.setdefault(sink, deque()).append(time.monotonic())
