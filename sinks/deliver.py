"""Hand alerts to a sink with bounded retries: exponential backoff, honouring Retry-After."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from rules.alerts import Alert
from sinks.base import Sink, SinkError

log = logging.getLogger(__name__)


async def deliver(
    sink: Sink,
    alerts: Sequence[Alert],
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
) -> bool:
    """Try up to `attempts` times; True when delivered. A non-retryable refusal stops at once."""
    failure = await attempt_delivery(
        sink, alerts, attempts=attempts, base_delay=base_delay, max_delay=max_delay
    )
    return failure is None


async def attempt_delivery(
    sink: Sink,
    alerts: Sequence[Alert],
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    before_attempt: Callable[[], Awaitable[None]] | None = None,
) -> SinkError | None:
    """Like `deliver`, but the last error when giving up (None: delivered), for dead-letters.
    `before_attempt` runs before every try (a rate limit: a retry is a message too)."""
    failure, attempt = SinkError(sink.name, "no attempt allowed", retryable=False), 0
    for attempt in range(1, attempts + 1):
        if before_attempt is not None:
            await before_attempt()
        try:
            await sink.send(alerts)
        except SinkError as exc:
            failure = exc
            if not exc.retryable or attempt == attempts:
                break
            delay = _delay(exc, attempt, base_delay, max_delay)
            log.warning("%s; retrying in %.1fs (attempt %d/%d)", exc, delay, attempt, attempts)
            await asyncio.sleep(delay)
        else:
            return None
    log.error("giving up on %d alert(s) after %d attempt(s): %s", len(alerts), attempt, failure)
    return failure


def _delay(exc: SinkError, attempt: int, base_delay: float, max_delay: float) -> float:
    backoff = min(max_delay, base_delay * 2 ** (attempt - 1))
    # A receiver's Retry-After is honoured up to max_delay: a robot asking for a day must not
    # park the whole delivery stream.
    delay = min(max_delay, exc.retry_after) if exc.retry_after is not None else backoff
    # Jitter spreads the retries of many workers hitting one robot.
    return delay * (1 + random.random() * 0.2)  # noqa: S311 - not cryptography
