"""`kpiwatch connect` against a local SP-API server, the real Kafka and the real Redis: killed
mid-paging and restarted, it resumes at the page after the last checkpoint and the orders topic
holds every order once; a crash between Kafka's ack and the checkpoint replays one page, whose
events keep their ids, so the engine still counts each order once. In its long-running mode it
serves webhooks to Kafka with metrics, dead-letters what it cannot map, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from integration.support import REPO, Services, ShopifyReceiver, free_port, read_topic
from pydantic import SecretStr
from unit.connectors.fakes import FakeAmazon, amazon_order

from connectors.amazon_sp import AmazonOrdersSource, LwaTokens, SpApi, SpStore
from connectors.api import make_client
from connectors.base import run_source
from connectors.checkpoint import RedisCheckpoints
from connectors.kafka import EventProducer, ensure_topics
from streams.events import EVENTS_TOPIC

pytestmark = pytest.mark.integration

ORDERS = 14  # 7 pages of 2
START = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Gate:
    """Holds the answer to one getOrders page until released, so a test can kill the
    connector while that page is in flight."""

    page: str | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def serve_fake(fake: FakeAmazon, gate: Gate) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        query = dict(request.query)
        gated = gate.page is not None and query.get("NextToken") == gate.page
        if request.path == "/orders/v0/orders" and gated:
            gate.reached.set()
            await gate.release.wait()
            return web.Response(status=503)  # its client is dead by now
        status, headers, body = fake.handle(
            request.method, request.path, query, request.headers, await request.read()
        )
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def amazon() -> AsyncIterator[tuple[FakeAmazon, Gate, str]]:
    fake = FakeAmazon([amazon_order(n) for n in range(1, ORDERS + 1)], page_size=2)
    gate = Gate()
    runner, url = await serve_fake(fake, gate)
    try:
        yield fake, gate, url
    finally:
        gate.release.set()
        await runner.cleanup()


def write_config(path: Path, url: str, store_id: str) -> None:
    path.write_text(
        "amazon_sp:\n"
        "  client_id: amzn1.application-oa2-client.test\n"
        "  client_secret: {env: TEST_LWA_SECRET}\n"
        f"  endpoint: {url}\n"
        f"  token_url: {url}/auth/o2/token\n"
        f"  start: {START.isoformat()}\n"
        "  feeds: [orders]\n"
        "  stores:\n"
        f"    - store_id: {store_id}\n"
        "      marketplace_id: ATVPDKIKX0DER\n"
        "      currency: USD\n"
        "      refresh_token: {env: TEST_SP_REFRESH}\n"
    )


def start_connect(
    config: Path, services: Services, prefix: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TEST_LWA_SECRET": "lwa-secret",
        "TEST_SP_REFRESH": "Atzr|refresh",
        "PYTHONPATH": str(REPO),
    }
    command = [
        sys.executable,
        "-m",
        "streams.cli",
        "-v",
        "connect",
        "amazon-sp",
        "--config",
        str(config),
        "--once",
        "--broker",
        services.kafka_bootstrap,
        "--topic-prefix",
        prefix,
        "--redis",
        services.redis_url,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)


async def wait_exit(process: subprocess.Popen[bytes], timeout: float = 90.0) -> int:
    for _ in range(int(timeout * 10)):
        code = process.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.1)
    process.kill()
    raise TimeoutError("kpiwatch connect did not finish")


async def order_ids(services: Services, prefix: str) -> list[str]:
    records = await topic_events(services, prefix)
    return [record["event_id"] for record in records if record["type"] == "order"]


async def topic_events(services: Services, prefix: str) -> list[dict[str, Any]]:
    """Every event on the topic once all the orders are there (and the connector's report of
    its pass: a feed event)."""

    def complete(found: list[dict[str, Any]]) -> bool:
        orders = {r["event_id"] for r in found if r["type"] == "order"}
        return len(orders) >= ORDERS and any(r["type"] == "feed" for r in found)

    return await read_topic(
        services.kafka_bootstrap, prefix + EVENTS_TOPIC, until=complete, timeout=30.0
    )


async def test_killed_mid_paging_then_restarted_gives_every_order_once(
    services: Services, prefix: str, tmp_path: Path, amazon: tuple[FakeAmazon, Gate, str]
) -> None:
    fake, gate, url = amazon
    config, log = tmp_path / "connect.yaml", tmp_path / "connect.log"
    write_config(config, url, f"us-{uuid.uuid4().hex[:8]}")
    gate.page = "page-4"
    first = start_connect(config, services, prefix, log)
    try:
        await asyncio.wait_for(gate.reached.wait(), 90.0)
    finally:
        first.send_signal(signal.SIGKILL)  # no goodbye: the hardest stop there is
        first.wait(10)
    gate.page = None
    gate.release.set()
    calls_before = len(fake.calls)

    second = start_connect(config, services, prefix, log)
    assert await wait_exit(second) == 0, log.read_text()

    resumed = [q.get("NextToken") for op, q in fake.calls[calls_before:] if op == "getOrders"]
    assert resumed == ["page-4", "page-5", "page-6", "page-7"], "restart did not resume"
    ids = await order_ids(services, prefix)
    counts = Counter(ids)
    assert len(counts) == ORDERS
    assert set(counts.values()) == {1}, f"doubled: {[i for i, n in counts.items() if n > 1]}"
    assert "4 page(s), 8 event(s), 0 rejected" in log.read_text()
    # The finished pass is reported to the engine: the store's orders feed is read fine.
    feeds = [r for r in await topic_events(services, prefix) if r["type"] == "feed"]
    assert [(r["feed"], r["status"]) for r in feeds] == [("orders", "ok")]


class Killed(Exception):
    pass


class CrashAfterAck(RedisCheckpoints):
    """The real Redis store, except that one save dies: as if the process were killed after
    Kafka acknowledged a page and before its cursor was written."""

    crash_on: int = 2
    saves: int = 0

    async def save(self, source: str, cursor: str, ttl: float | None = None) -> None:
        self.saves += 1
        if self.saves == self.crash_on:
            raise Killed
        await super().save(source, cursor, ttl)


async def test_a_page_replayed_after_a_crash_is_counted_once(
    services: Services, prefix: str, tmp_path: Path, amazon: tuple[FakeAmazon, Gate, str]
) -> None:
    _, _, url = amazon
    topics = [prefix + EVENTS_TOPIC]
    await ensure_topics(services.kafka_bootstrap, topics, 4)
    store = SpStore(
        store_id=f"us-{uuid.uuid4().hex[:8]}", marketplace_id="ATVPDKIKX0DER", currency="USD"
    )
    checkpoints = CrashAfterAck.from_url(services.redis_url)
    async with make_client() as client, EventProducer(services.kafka_bootstrap, prefix) as producer:
        tokens = LwaTokens(
            client, "app", SecretStr("lwa"), SecretStr("Atzr|refresh"), url=url + "/auth/o2/token"
        )
        source = AmazonOrdersSource(SpApi(client, tokens, endpoint=url), store, START)
        with pytest.raises(Killed):
            await run_source(source, producer.send_batch, checkpoints)
        stats = await run_source(source, producer.send_batch, checkpoints)
    await checkpoints.close()
    assert stats.pages == 6  # page 2 again, then 3..7

    ids = await order_ids(services, prefix)
    assert len(ids) == ORDERS + 2  # page 2 is on the topic twice ...
    events = tmp_path / "orders.jsonl"
    records = await read_topic(
        services.kafka_bootstrap, prefix + EVENTS_TOPIC, until=lambda r: len(r) >= len(ids)
    )
    events.write_text(
        "".join(
            json.dumps({k: v for k, v in r.items() if not k.startswith("_")}) + "\n"
            for r in records
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "kpis", str(events), "--window", "7d"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["values"]["orders"] == str(ORDERS)  # ... and counted once


async def test_connect_serves_shopify_webhooks_to_kafka_with_metrics(
    services: Services, prefix: str, tmp_path: Path
) -> None:
    """The long-running mode: a signed webhook to --listen lands on the orders topic, the
    metrics show the store's last hand-off, a bad record is dead-lettered, SIGTERM stops it."""
    from unit.connectors.test_shopify import order

    store_id = f"shopify-{uuid.uuid4().hex[:8]}"
    receiver = ShopifyReceiver.start(services, prefix, tmp_path, store_id=store_id, verbose=True)
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            good = json.dumps(order()).encode()
            bad = json.dumps(order(currency="XXQ")).encode()
            answers = [
                await receiver.post_when_up(client, body, webhook_id)
                for body, webhook_id in ((good, "w-good"), (bad, "w-bad"), (good, "w-good"))
            ]
            assert [(a.status_code, a.text) for a in answers] == [
                (200, "ok"),
                (200, "rejected"),
                (200, "duplicate"),
            ]
            text = (await client.get(f"http://{receiver.metrics}/metrics")).text
        assert f'kpiwatch_connector_events_total{{source="shopify",store="{store_id}"}} 1.0' in text
        assert 'kpiwatch_connector_rejected_total{source="shopify"} 1.0' in text
        assert (
            f'kpiwatch_connector_last_success_timestamp_seconds{{source="shopify",store="{store_id}"}}'
            in text
        )
    finally:
        code = receiver.stop()
    assert code == 0, receiver.log.read_text()
    [event] = await read_topic(
        services.kafka_bootstrap, prefix + EVENTS_TOPIC, until=lambda r: len(r) >= 1
    )
    assert event["store_id"] == store_id
    [dead] = await read_topic(
        services.kafka_bootstrap, prefix + "dead-letter", until=lambda r: len(r) >= 1
    )
    assert dead["source"] == "shopify orders/create webhook w-bad"
    assert "XXQ" in dead["reason"]
