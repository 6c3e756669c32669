"""What every marketplace API client shares: a per-operation token bucket (SP-API's documented
rate and burst), retries on 429 and 5xx with Retry-After or jittered exponential backoff, JSON
read with Decimal numbers, and log lines that never show a query string (tokens live there).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, quote_plus

import httpx
from pydantic import SecretStr

from connectors.base import SourceError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# httpx's default is no total limit on a read; a stalled marketplace must not hang a connector.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
HTTPX_LOGGERS: Final = ("httpx", "httpcore")


def make_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """The one client a connector process shares, with explicit timeouts."""
    install_redaction()
    return httpx.AsyncClient(timeout=timeout)


class TokenBucket:
    """`rate` requests per second on average, at most `burst` at once (SP-API usage plans)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await self._sleep((1 - self._tokens) / self.rate)
                self._refill()
                # A fake clock in tests may not have moved: the wait has paid for this token.
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


@dataclass
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n))."""

    base: float = 1.0
    cap: float = 60.0
    attempts: int = 6
    # A platform may ask for a long wait; beyond this we give up and let the next poll retry.
    max_retry_after: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110); None if absent or bad."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


@dataclass
class Throttle:
    """Rate limit and retry policy for one operation of one API."""

    what: str
    bucket: TokenBucket | None = None
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Sleep = asyncio.sleep
    waits: list[float] = field(default_factory=list)  # what we slept, for logs and tests

    async def send(
        self, client: httpx.AsyncClient, build: Callable[[], httpx.Request]
    ) -> httpx.Response:
        """Send a freshly built request (signatures carry timestamps) until it is not a 429 or
        5xx; after `backoff.attempts` tries raise SourceError."""
        for attempt in range(self.backoff.attempts):
            if self.bucket is not None:
                await self.bucket.acquire()
            response = await self._send_once(client, build(), attempt)
            if response is not None and not retryable(response):
                return response
            await self._wait(response, attempt)
        raise SourceError(self.what, f"still failing after {self.backoff.attempts} attempts")

    async def _send_once(
        self, client: httpx.AsyncClient, request: httpx.Request, attempt: int
    ) -> httpx.Response | None:
        try:
            response = await client.send(request)
        except httpx.TransportError as exc:
            # The exception text can carry the URL and so a token: keep only its class.
            log.warning("%s: %s on attempt %d", self.what, type(exc).__name__, attempt + 1)
            return None
        await response.aread()
        return response

    async def _wait(self, response: httpx.Response | None, attempt: int) -> None:
        asked = retry_after(response) if response is not None else None
        if asked is not None and asked > self.backoff.max_retry_after:
            raise SourceError(self.what, f"asked to wait {asked:.0f}s; giving up until next poll")
        delay = asked if asked is not None else self.backoff.delay(attempt)
        status = response.status_code if response is not None else "no response"
        log.info("%s: %s, retrying in %.1fs", self.what, status, delay)
        self.waits.append(delay)
        await self.sleep(delay)


def read_json(response: httpx.Response, where: str) -> dict[str, Any]:
    """The body as a JSON object with Decimal numbers (a float would lose the cent)."""
    try:
        data = json.loads(response.content, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(where, f"HTTP {response.status_code}, body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(where, f"expected a JSON object, got {type(data).__name__}")
    return data


def scrub(text: str, secrets: Iterable[SecretStr | str | None]) -> str:
    """A platform's error text with every secret it might quote back cut out, in the forms a
    request carries it (as is, URL- or form-encoded, JSON-escaped): an endpoint, or a proxy in
    front of it, may echo the request it refused, and its text goes into errors and logs."""
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not value:
            continue
        for form in {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}:
            text = text.replace(form, "<redacted>")
    return text


class _StripQuery(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.copy_with(query=None) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


_FILTER: Final = _StripQuery()


def install_redaction() -> None:
    """Idempotent: httpx logs each URL at INFO, and Shopee and TikTok sign in the query."""
    for name in HTTPX_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
