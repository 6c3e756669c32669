"""Fixtures for sink tests: a sample alert and httpx clients on a MockTransport, closed after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

import httpx
import pytest

from rules.alerts import Alert, fingerprint

Handler = Callable[[httpx.Request], httpx.Response]
ClientFactory = Callable[[Handler], httpx.AsyncClient]
AlertFactory = Callable[..., Alert]


def _alert(sku: str = "A", status: str = "firing") -> Alert:
    labels = {"platform": "amazon", "marketplace": "US", "store": "us-1", "sku": sku}
    return Alert.model_validate(
        {
            "rule": "acos-high",
            "severity": "warning",
            "status": status,
            "labels": labels,
            "value": Decimal("0.4"),
            "threshold": "> 35%",
            "window_start": datetime.fromisoformat("2026-11-23T08:00:00+00:00"),
            "window_end": datetime.fromisoformat("2026-11-24T08:00:00+00:00"),
            "at": datetime.fromisoformat("2026-11-23T18:00:00+00:00"),
            "kpi": "acos",
            "fingerprint": fingerprint("acos-high", labels),
            "summary": f"[WARNING] acos-high: acos 40.00% > 35%; store=us-1 sku={sku}",
        }
    )


@pytest.fixture
def make_alert() -> AlertFactory:
    return _alert


@pytest.fixture
async def mock_client() -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    def factory(handler: Handler) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
