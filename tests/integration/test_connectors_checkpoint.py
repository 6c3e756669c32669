"""Connector cursors in the real Redis: saved, read back by a new store, kept per source."""

from __future__ import annotations

import uuid

import pytest
from integration.support import Services

from connectors.checkpoint import RedisCheckpoints

pytestmark = pytest.mark.integration


async def test_redis_checkpoints_survive_a_new_client(services: Services) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    first = RedisCheckpoints.from_url(services.redis_url, prefix)
    try:
        assert await first.load("amazon_sp:orders:us-1") is None
        await first.save("amazon_sp:orders:us-1", '{"after":"2026-11-20T00:00:00Z"}')
        await first.save("shopee:orders:my-1", '{"time_from":1}')
    finally:
        await first.close()
    second = RedisCheckpoints.from_url(services.redis_url, prefix)
    try:
        assert await second.load("amazon_sp:orders:us-1") == '{"after":"2026-11-20T00:00:00Z"}'
        assert await second.load("shopee:orders:my-1") == '{"time_from":1}'
        assert second.key("x") == f"{prefix}checkpoint:x"
    finally:
        await second.close()
