"""The alert record: what the rule engine emits, what the `alerts` topic carries, what sinks get."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from rules.schema import Severity

Status = Literal["firing", "resolved"]


class Money(BaseModel):
    """An amount and its ISO-4217 currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Decimal
    currency: str


class Alert(BaseModel):
    """One alert transition for one fingerprint (rule + scope labels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    severity: Severity
    status: Status
    labels: dict[str, str]
    value: Decimal | None
    threshold: str
    window_start: AwareDatetime | None
    window_end: AwareDatetime | None
    at: AwareDatetime
    kpi: str
    fingerprint: str
    summary: str
    # A transition inside a mute calendar (or the resolve of a firing nobody was told about):
    # recorded on the alerts topic and in the lifecycle, never sent to a person.
    muted: bool = False
    # When the firing episode began (after `for:`); the same on its repeats and its resolve.
    started_at: AwareDatetime | None = None
    # The rule's message templates rendered, by language (en, zh).
    messages: dict[str, str] = {}
    # The marketplace's IANA zone the window is counted in ("Asia/Tokyo"); None on records
    # written before it was carried (they show their window in the offset they carry).
    zone: str | None = None
    # A money KPI's value in the scope's selling currency and in the reporting currency, so a
    # person reads "¥1,980 / $12.87"; `value` is in whichever the threshold is written in.
    selling: Money | None = None
    reporting: Money | None = None

    @property
    def key(self) -> str:
        """Idempotency key of this transition: the same breach re-processed gives the same key."""
        return f"{self.fingerprint}:{self.status}:{self.severity}:{self.at.isoformat()}"


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """A stable id for (rule, scope labels), the unit of the alert lifecycle."""
    text = rule + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_value(value: Decimal | None, unit: str, currency: str | None) -> str:
    """A KPI value the way a person reads it: 62.50%, 1,234.00 USD, 3."""
    if value is None:
        return "undefined"
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "money":
        return f"{value:,.2f} {currency or ''}".rstrip()
    if unit == "days":
        return f"{value:,.1f} days"
    if unit == "flag":
        return "yes" if value else "no"
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"
