"""Signed silence links: a valid one verifies; an expired, altered or foreign-key one does not."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from rules.alerts import Alert, fingerprint
from rules.fileconfig import SecretSource
from sinks.config import LinksConfig, SilenceLinks
from sinks.links import LinkError, Links, verify

KEY = SecretStr("k" * 32)
NOW = 1_800_000_000.0


def alert(status: str = "firing") -> Alert:
    labels = {"store": "jp-1", "sku": "A"}
    return Alert.model_validate(
        {
            "rule": "stockout", "severity": "critical", "status": status, "labels": labels,
            "value": Decimal(0), "threshold": "== 1", "window_start": None, "window_end": None,
            "at": datetime.fromisoformat("2026-11-30T05:00:00+00:00"), "kpi": "stockout",
            "fingerprint": fingerprint("stockout", labels), "summary": "stockout",
        }
    )  # fmt: skip


def links(lifetime: float = 3600) -> Links:
    silence = SilenceLinks(
        url="https://kpiwatch.example.test/", key=SecretSource.of(KEY.get_secret_value()),
        lifetime=lifetime, duration=7200,
    )  # fmt: skip
    return Links(LinksConfig(silence=silence), clock=lambda: NOW)


def query_of(action: str = "silence", lifetime: float = 3600) -> dict[str, str]:
    url = links(lifetime).action(alert(), action)  # type: ignore[arg-type]
    assert url is not None
    assert url.startswith("https://kpiwatch.example.test/silence-link?")
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_valid_link_verifies() -> None:
    signed = verify(KEY, query_of(), NOW + 10)
    assert (signed.action, signed.fingerprint, signed.seconds) == (
        "silence", alert().fingerprint, 7200.0,
    )  # fmt: skip
    assert signed.rule == "stockout"
    assert verify(KEY, query_of("ack"), NOW).action == "ack"


def test_an_expired_link_is_refused() -> None:
    query = query_of(lifetime=60)
    verify(KEY, query, NOW + 59)
    with pytest.raises(LinkError, match="expired"):
        verify(KEY, query, NOW + 60)


@pytest.mark.parametrize(
    ("field", "value"),
    [("fp", "0" * 16), ("d", "604800"), ("exp", str(int(NOW) + 10**6)), ("a", "ack"), ("r", "x")],
)
def test_a_tampered_link_is_refused(field: str, value: str) -> None:
    query = query_of() | {field: value}
    with pytest.raises(LinkError, match="signature"):
        verify(KEY, query, NOW)


def test_a_link_signed_with_another_key_or_no_signature_is_refused() -> None:
    query = query_of()
    with pytest.raises(LinkError, match="signature"):
        verify(SecretStr("another key"), query, NOW)
    with pytest.raises(LinkError, match="signature"):
        verify(KEY, {k: v for k, v in query.items() if k != "sig"}, NOW)
    with pytest.raises(LinkError, match="incomplete"):
        verify(KEY, {"sig": query["sig"]}, NOW)


def test_a_resolved_alert_gets_no_action_links() -> None:
    assert links().action(alert("resolved"), "silence") is None
