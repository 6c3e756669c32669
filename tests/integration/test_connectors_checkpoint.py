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


async def test_marketing_stream_hours_expire_in_redis(services: Services) -> None:
    from datetime import UTC, datetime

    from unit.connectors.fakes_ads import message, traffic
    from unit.connectors.test_amazon_ads import config

    from connectors.amazon_ads_stream import MarketingStream

    prefix = f"t{uuid.uuid4().hex[:10]}:"
    store = RedisCheckpoints.from_url(services.redis_url, prefix)
    try:
        ams = MarketingStream(config("stream"), store)
        ams.now = lambda: datetime(2026, 11, 21, 10, tzinfo=UTC)
        await ams.handle(message(traffic("t-1", "2026-11-20T10:00:00-08:00")), "sqs 1")
        client = store._client
        [key] = [k async for k in client.scan_iter(match=f"{prefix}*")]
        ttl = await client.ttl(key)
        # 70 days after the hour, seen from the test's clock (about 69.3 days from "now").
        assert 69 * 86400 < ttl <= 70 * 86400
    finally:
        await store.close()
