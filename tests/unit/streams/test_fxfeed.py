"""FX rate messages: good ones apply, bad ones are skipped with their offset in the log."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from streams.fxfeed import apply_message
from streams.reference import FxRates


def test_a_rate_message_applies_from_its_date() -> None:
    fx = FxRates("USD")
    assert apply_message(
        fx, b'{"date": "2026-11-01", "currency": "JPY", "rate": "0.0067"}', "t/0/0"
    )
    assert fx.rate("JPY", date(2026, 11, 2)) == Decimal("0.0067")


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"date": "2026-11-01", "currency": "JPY"}',
        b'{"date": "2026-11-01", "currency": "XYZ", "rate": "1"}',
        b'{"date": "2026-11-01", "currency": "JPY", "rate": "0"}',
        None,
    ],
)
def test_a_bad_rate_message_is_skipped_and_logged(
    value: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    fx = FxRates("USD")
    assert apply_message(fx, value, "fx-rates/0/7") == 0
    assert "skipped FX rate at fx-rates/0/7" in caplog.text
    assert fx.rate("JPY", date(2026, 11, 2)) is None
