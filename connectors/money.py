"""Turning a platform's line total into our per-unit order lines without losing a minor unit."""

from __future__ import annotations

from decimal import Decimal

from streams.events import Money, OrderLine, minor_unit_exponent


def lines_for_total(sku: str, quantity: int, total: Decimal, currency: str) -> list[OrderLine]:
    """Lines whose unit_price x quantity add up to `total` exactly.

    A platform that reports a line's total (Amazon's ItemPrice is price x quantity) may hold a
    total that does not divide evenly (10.00 for 3): then some units carry one minor unit more,
    e.g. 2 x 3.33 + 1 x 3.34, so GMV stays exact.
    """
    if quantity < 1:
        raise ValueError(f"quantity must be at least 1, got {quantity}")
    exponent = minor_unit_exponent(currency)
    minor = total.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{total} {currency} has more decimals than the currency allows")
    base, remainder = divmod(int(minor), quantity)
    lines = []
    for units, amount in ((quantity - remainder, base), (remainder, base + 1)):
        if units:
            price = Money(amount=Decimal(amount).scaleb(-exponent), currency=currency)
            lines.append(OrderLine(sku=sku, quantity=units, unit_price=price))
    return lines
