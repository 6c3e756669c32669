"""What the integration tests share: service discovery, worker subprocesses, a webhook server
and reading topics of the real broker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "deploy" / "services.sh"


def services_sh(*args: str) -> str:
    result = subprocess.run(
        ["bash", str(SERVICES), *args], capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"services.sh {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    """One `kpiwatch worker` subprocess, its output in files; started and stopped by its PID."""

    env: dict[str, str]
    workdir: Path
    web_port: int
    name: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.stderr"

    @property
    def out(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.stdout"

    def start(self, timeout: float = 90.0) -> None:
        self.spawn()
        self._wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.tail()}")
            if "Ready" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.25)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL, by PID: no shutdown code runs, as when a machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def spawn(self) -> None:
        """Start without waiting for ready (to kill it while it recovers)."""
        self.starts += 1
        with self.out.open("wb") as out, self.log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=err,
            )

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _dump_stacks(self.process.pid)
            self.process.kill()
            self.process.wait(10)
            raise
        finally:
            self.process = None

    def state(self) -> dict[str, Any]:
        """The worker's tables (buckets, inventory, rollups) as JSON."""
        return self._get("/state")

    def kpis(self, by: str, window: str, at: str, *, day: bool = False) -> list[dict[str, Any]]:
        """/kpis with `at=` (the window whose last bucket holds it), or with `day=` when `day`
        is set (`at` is then a local day, YYYY-MM-DD)."""
        query = {"by": by, "window": window, ("day" if day else "at"): at}
        rows: list[dict[str, Any]] = self._get("/kpis", **query)["kpis"]
        return rows

    def scorecards(self, **query: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._get("/scorecards", **query)["scorecards"]
        return rows

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _dump_stacks(pid: int) -> None:
    """Where a process that will not stop is stuck, when py-spy is at hand (KPIWATCH_PYSPY)."""
    import os

    tool = os.environ.get("KPIWATCH_PYSPY")
    if tool:
        dump = subprocess.run([tool, "dump", "--pid", str(pid)], capture_output=True, text=True)
        print(dump.stdout, dump.stderr)


WorkerFactory = Callable[..., WorkerProcess]


@dataclass
class Webhook:
    """A real HTTP server on 127.0.0.1 that records each JSON body it is sent."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for body in list(self.bodies) for alert in body["alerts"]]


async def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[Any]], bool], timeout: float = 90.0
) -> list[dict[str, Any]]:
    """Every record of `topic` as JSON, once `until(records)` holds and the reader has caught up
    with the end of every partition (so extra, unexpected records are seen too)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        partitions = await _partitions(bootstrap, topic, deadline)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for messages in batches.values():
                for m in messages:
                    records.extend(_records(m))
            if until(records) and await _caught_up(consumer, partitions):
                break
        return records
    finally:
        await consumer.stop()


def _records(message: Any) -> list[dict[str, Any]]:
    """A message's JSON record, or each record of a packed message (a JSON array)."""
    value = json.loads(message.value)
    where = {"_partition": message.partition, "_offset": message.offset}
    if isinstance(value, list):
        return [{**item, **where, "_index": n} for n, item in enumerate(value)]
    return [{**value, **where}]


async def _partitions(bootstrap: str, topic: str, deadline: float) -> list[TopicPartition]:
    # The admin client, not consumer metadata: asking a broker's metadata about a missing topic
    # would auto-create it with the wrong partition count.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while time.monotonic() < deadline:
            if topic in await admin.list_topics():
                [described] = await admin.describe_topics([topic])
                if described["partitions"]:
                    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
            await asyncio.sleep(0.3)
    finally:
        await admin.close()
    raise TimeoutError(f"topic {topic} did not appear")


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    ends = await consumer.end_offsets(partitions)
    positions = {tp: await consumer.position(tp) for tp in partitions}
    return all(positions[tp] >= ends[tp] for tp in partitions)


def alert_identity(alert: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal between the two runtimes for 'the same alert'."""
    return (
        alert["rule"],
        alert["fingerprint"],
        alert["status"],
        alert["severity"],
        alert["at"],
        alert["value"],
        alert["threshold"],
        alert["window_start"],
    )


@dataclass
class ShopifyReceiver:
    """`kpiwatch connect shopify` in its long-running mode: signed webhooks for one shop on
    `url`, its metrics on `metrics`; started and stopped by its PID."""

    process: subprocess.Popen[bytes]
    url: str
    metrics: str
    log: Path
    shop: str
    secret: str

    @classmethod
    def start(
        cls,
        services: Services,
        prefix: str,
        workdir: Path,
        *,
        store_id: str,
        shop: str = "example.myshopify.com",
        secret: str = "hush",
        verbose: bool = False,
    ) -> ShopifyReceiver:
        config, log = workdir / "connect.yaml", workdir / "connect.log"
        config.write_text(
            "shopify:\n"
            "  secret: {env: TEST_SHOPIFY_SECRET}\n"
            "  shops:\n"
            f"    {shop}: {{store_id: {store_id}, marketplace: US}}\n"
        )
        listen, metrics = free_port(), free_port()
        env = {**os.environ, "TEST_SHOPIFY_SECRET": secret, "PYTHONPATH": str(REPO)}
        command = [
            *(sys.executable, "-m", "streams.cli", *(["-v"] if verbose else [])),
            *("connect", "shopify", "--config", str(config)),
            *("--listen", f"127.0.0.1:{listen}", "--metrics", f"127.0.0.1:{metrics}"),
            *("--broker", services.kafka_bootstrap, "--topic-prefix", prefix),
            *("--redis", services.redis_url),
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )
        url = f"http://127.0.0.1:{listen}/webhooks/shopify"
        return cls(process, url, f"127.0.0.1:{metrics}", log, shop, secret)

    async def post(
        self, client: httpx.AsyncClient, body: bytes, webhook_id: str
    ) -> httpx.Response | None:
        """One signed orders/create delivery, as Shopify makes it; None: no connection."""
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).digest()
        headers = {
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": self.shop,
        }
        try:
            return await client.post(self.url, content=body, headers=headers)
        except httpx.TransportError:
            return None

    async def post_when_up(
        self, client: httpx.AsyncClient, body: bytes, webhook_id: str, timeout: float = 60.0
    ) -> httpx.Response:
        """Post once the receiver listens; its answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kpiwatch connect exited:\n{self.log.read_text()}")
            response = await self.post(client, body, webhook_id)
            if response is not None:
                return response
            await asyncio.sleep(0.1)
        raise TimeoutError("the Shopify receiver never came up")

    def stop(self) -> int:
        """SIGTERM, by PID; its exit code (killed after 30 s)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)
