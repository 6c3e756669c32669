"""The shared API plumbing: token bucket pacing, Retry-After parsing, exact line splitting."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from unit.connectors.fakes import Sleeps

from connectors.api import TokenBucket, retry_after
from connectors.money import lines_for_total


async def test_token_bucket_spends_burst_then_paces(sleeps: Sleeps) -> None:
    now = [0.0]
    bucket = TokenBucket(0.5, 2, clock=lambda: now[0], sleep=sleeps)
    for _ in range(3):
        await bucket.acquire()
    # Two from the burst, then the third waits 1 / 0.5 s (getOrderItems' documented rate).
    assert sleeps.waits == [2.0]
    now[0] = 10.0
    await bucket.acquire()
    assert sleeps.waits == [2.0]


def test_retry_after_seconds_and_http_date() -> None:
    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert retry_after(response("7")) == 7.0
    assert retry_after(response("Fri, 20 Nov 2026 10:00:30 GMT"), now) == 30.0
    assert retry_after(response("soon")) is None
    assert retry_after(httpx.Response(429)) is None


@pytest.mark.parametrize(
    ("total", "quantity", "currency", "expected"),
    [
        ("10.00", 3, "USD", [(2, "3.33"), (1, "3.34")]),
        ("39.98", 2, "USD", [(2, "19.99")]),
        ("2980", 1, "JPY", [(1, "2980")]),
        ("2980.00", 4, "JPY", [(4, "745")]),
    ],
)
def test_lines_add_up_to_the_total(
    total: str, quantity: int, currency: str, expected: list[tuple[int, str]]
) -> None:
    lines = lines_for_total("S", quantity, Decimal(total), currency)
    assert [(line.quantity, str(line.unit_price.amount)) for line in lines] == expected
    assert sum(line.unit_price.amount * line.quantity for line in lines) == Decimal(total)


def test_total_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="more decimals"):
        lines_for_total("S", 1, Decimal("25.99"), "JPY")
