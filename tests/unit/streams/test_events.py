"""The event contract: valid events parse, invalid ones fail with a reason naming the field."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from rules.errors import InvalidEventError
from streams.events import AdSpendEvent, InventoryEvent, Money, OrderEvent, decode, encode


def order(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "order",
        "event_id": "e-1",
        "occurred_at": "2026-11-23T10:00:00+09:00",
        "platform": "amazon",
        "marketplace": "JP",
        "store_id": "jp-1",
        "order_id": "o-1",
        "status": "placed",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": {"amount": "1980", "currency": "JPY"}}],
    }
    data.update(changes)
    return data


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_order_parses_with_money_as_decimal() -> None:
    event = decode(raw(order()), "f:1")
    assert isinstance(event, OrderEvent)
    assert event.lines[0].unit_price.amount == Decimal("1980")
    assert event.lines[0].unit_price.minor_units() == 1980


def test_json_numbers_keep_every_cent() -> None:
    line = {"sku": "A", "quantity": 1, "unit_price": {"amount": 19.99, "currency": "USD"}}
    text = json.dumps(order(marketplace="US", lines=[line]))
    event = decode(text.encode(), "f:1")
    assert isinstance(event, OrderEvent)
    assert event.lines[0].unit_price.minor_units() == 1999


@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [("USD", "12.34", 1234), ("JPY", "1200", 1200), ("KWD", "1.234", 1234), ("USD", "5", 500)],
)
def test_minor_units_follow_iso_4217(currency: str, amount: str, minor: int) -> None:
    assert Money(amount=Decimal(amount), currency=currency).minor_units() == minor


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (order(occurred_at="2026-11-23T10:00:00"), "occurred_at: Input should have timezone info"),
        (
            order(
                lines=[
                    {"sku": "A", "quantity": -1, "unit_price": {"amount": "1", "currency": "JPY"}}
                ]
            ),
            "lines.0.quantity: Input should be greater than 0",
        ),
        (
            order(
                lines=[
                    {"sku": "A", "quantity": 1, "unit_price": {"amount": "1", "currency": "XYZ"}}
                ]
            ),
            "unknown currency 'XYZ'",
        ),
        (
            order(
                lines=[
                    {"sku": "A", "quantity": 1, "unit_price": {"amount": "12.5", "currency": "JPY"}}
                ]
            ),
            "12.5 JPY has more decimals than the currency's 0 minor digits",
        ),
        (order(platform="ebay"), "platform: Input should be"),
        (order(occurred_at="1970-01-01T00:00:00Z"), "year 1970 is outside 2000..2100"),
        (order(surprise=1), "surprise: Extra inputs are not permitted"),
        (order(lines=[]), "lines: an order needs at least one line unless it is cancelled"),
    ],
)
def test_invalid_order_names_the_field(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode(raw(data), "orders/3/17", "order")
    assert caught.value.source == "orders/3/17"
    assert reason in caught.value.reason


def test_missing_field_is_named() -> None:
    data = order()
    del data["store_id"]
    with pytest.raises(InvalidEventError, match="store_id: Field required"):
        decode(raw(data), "f:1", "order")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_undecodable_bytes_are_rejected(value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError, match=reason):
        decode(value, "f:9")


def test_topic_kind_must_match_type() -> None:
    with pytest.raises(InvalidEventError, match="a 'order' event on the 'inventory' topic"):
        decode(raw(order()), "inventory/0/1", "inventory")


def test_type_may_be_left_out_on_its_topic() -> None:
    data = order()
    del data["type"]
    assert isinstance(decode(raw(data), "orders/0/1", "order"), OrderEvent)


def test_mixed_currencies_in_one_order_are_rejected() -> None:
    lines = [
        {"sku": "A", "quantity": 1, "unit_price": {"amount": "1", "currency": "USD"}},
        {"sku": "B", "quantity": 1, "unit_price": {"amount": "1", "currency": "EUR"}},
    ]
    with pytest.raises(InvalidEventError, match="order lines mix currencies"):
        decode(raw(order(lines=lines)), "f:1")


def ad(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "ad_spend",
        "event_id": "a-1",
        "occurred_at": "2026-11-23T11:05:00Z",
        "platform": "amazon",
        "marketplace": "US",
        "store_id": "us-1",
        "campaign_id": "c-1",
        "sku": "A",
        "interval_start": "2026-11-23T10:00:00Z",
        "interval_end": "2026-11-23T11:00:00Z",
        "impressions": 1000,
        "clicks": 12,
        "spend": {"amount": "9.60", "currency": "USD"},
        "attributed_sales": {"amount": "49.90", "currency": "USD"},
        "attributed_orders": 2,
    }
    data.update(changes)
    return data


def test_ad_spend_parses_and_checks_interval() -> None:
    assert isinstance(decode(raw(ad()), "f:1"), AdSpendEvent)
    with pytest.raises(InvalidEventError, match="interval_end must be after interval_start"):
        decode(raw(ad(interval_end="2026-11-23T09:00:00Z")), "f:1")
    with pytest.raises(InvalidEventError, match="same currency"):
        decode(raw(ad(attributed_sales={"amount": "1", "currency": "EUR"})), "f:1")


def test_inventory_rejects_negative_stock() -> None:
    data = {
        "type": "inventory",
        "event_id": "i-1",
        "occurred_at": "2026-11-23T11:05:00Z",
        "platform": "shopee",
        "marketplace": "MY",
        "store_id": "my-1",
        "sku": "A",
        "warehouse": "own",
        "available": 5,
        "as_of": "2026-11-23T11:00:00Z",
    }
    assert isinstance(decode(raw(data), "f:1"), InventoryEvent)
    with pytest.raises(InvalidEventError, match="available: Input should be greater than or equal"):
        decode(raw({**data, "available": -5}), "f:1")


def test_encode_round_trips() -> None:
    event = decode(raw(order()), "f:1")
    assert decode(encode(event), "f:2") == event


def test_floats_are_refused_when_building_money_in_python() -> None:
    with pytest.raises(ValueError, match="not a float"):
        Money(amount=19.99, currency="USD")  # type: ignore[arg-type]
