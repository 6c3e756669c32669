"""Fixtures for connector tests: clients on fake platform servers, a recording sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from unit.connectors.fakes import Reply, Sleeps, mock_client


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[Callable[..., Reply]], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(handle: Callable[..., Reply]) -> httpx.AsyncClient:
        clients.append(mock_client(handle))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
