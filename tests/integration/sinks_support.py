"""What the sink integration tests share: a webhook robot that can be down, alerts written
straight to a worker's alerts topic, and workers with a sinks file and Redis."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from integration.support import Services, WorkerFactory, WorkerProcess

from rules.alerts import Alert, fingerprint

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@dataclass
class Robot:
    """A webhook that can be down (503) and records when each request arrived."""

    url: str
    down: bool = False
    requests: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)
    refused: int = 0

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for _, alerts in list(self.requests) for alert in alerts]

    def keys(self) -> list[str]:
        return [key_of(a) for a in self.alerts()]


def key_of(alert: dict[str, Any]) -> str:
    """The idempotency key a webhook alert carries (checked against the one it derives from)."""
    key = Alert.model_validate({k: v for k, v in alert.items() if k != "key"}).key
    assert alert.get("key", key) == key
    return key


@contextmanager
def robot_server() -> Iterator[Robot]:
    """A Robot on 127.0.0.1, stopped on exit."""
    state = Robot("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.down:
                state.refused += 1
                self.send_response(503)
            else:
                state.requests.append((time.monotonic(), json.loads(body)["alerts"]))
                self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/robot"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def sinks_file(tmp_path: Path, extra: str, route: str) -> Path:
    path = tmp_path / "sinks.yaml"
    path.write_text(
        "sinks:\n  - name: robot\n    type: webhook\n    url: {env: ROBOT_URL}\n"
        + extra
        + route
        + "delivery:\n  attempts: 40\n  base_delay: 0.2\n  max_delay: 1s\n"
    )
    return path


def make_worker(
    worker_factory: WorkerFactory,
    services: Services,
    prefix: str,
    robot: Robot,
    sinks: Path,
    name: str,
) -> WorkerProcess:
    worker = worker_factory(prefix, instance_id=f"{prefix}{name}")
    worker.env.update(
        {
            "KPIWATCH_SINKS_FILE": str(sinks),
            "KPIWATCH_REDIS_URL": services.redis_url,
            "ROBOT_URL": robot.url,
        }
    )
    return worker


def alert(store: str, sku: str, status: str = "firing", minute: int = 0) -> Alert:
    labels = {"platform": "amazon", "marketplace": "US", "store": store, "sku": sku}
    return Alert(
        rule="stockout",
        severity="critical",
        status=status,  # type: ignore[arg-type]
        labels=labels,
        value=Decimal(0),
        threshold="<= 0",
        window_start=None,
        window_end=None,
        at=AT + timedelta(minutes=minute),
        kpi="available",
        fingerprint=fingerprint("stockout", labels),
        summary=f"{store} {sku} {status}",
    )


async def produce(bootstrap: str, topic: str, alerts: list[Alert]) -> None:
    """Keyed by fingerprint, as the pipeline writes them: one alert's transitions stay in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for item in alerts:
            await producer.send_and_wait(
                topic, item.model_dump_json().encode(), key=item.fingerprint.encode()
            )
    finally:
        await producer.stop()


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)
