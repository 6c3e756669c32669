"""Fixtures for the integration tests: real Kafka and Redis from deploy/services.sh, kpiwatch
workers as subprocesses, a local HTTP server as webhook. Everything a test starts, it stops, by
PID; services already running before the session are used and left running."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from integration.sinks_support import Robot, robot_server
from integration.support import (
    Services,
    Webhook,
    WorkerFactory,
    WorkerProcess,
    free_port,
    services_sh,
)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """Kafka and Redis on 127.0.0.1, started for this session unless already running."""
    status = services_sh("status").splitlines()
    started = [
        name
        for name in ("kafka", "redis")
        if not any(line.startswith(name) and " running" in line for line in status)
    ]
    for name in started:
        services_sh("start", name)
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in services_sh("env").splitlines()
        if line.startswith("export ")
    )
    try:
        yield Services(env["KPIWATCH_KAFKA_BOOTSTRAP"], env["KPIWATCH_REDIS_URL"])
    finally:
        for name in started:
            services_sh("stop", name)


@pytest.fixture
def prefix() -> str:
    """Topic prefix (and so app id and consumer group) unique to one test."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def worker_factory(services: Services, tmp_path: Path) -> Iterator[WorkerFactory]:
    workers: list[WorkerProcess] = []

    def make(
        prefix: str,
        *,
        rules: Path | None = None,
        webhook: str | None = None,
        instance_id: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> WorkerProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith("KPIWATCH_")}
        env.update(
            {
                "KPIWATCH_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
                "KPIWATCH_TOPIC_PREFIX": prefix,
                "KPIWATCH_WEB_PORT": str(free_port()),
                "KPIWATCH_DATA_DIR": str(tmp_path / f"data-{len(workers)}"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if rules is not None:
            env["KPIWATCH_RULES"] = json.dumps([str(rules)])
        if webhook is not None:
            env["KPIWATCH_WEBHOOK_URL"] = webhook
        if instance_id is not None:
            env["KPIWATCH_INSTANCE_ID"] = instance_id
        env.update(extra or {})
        worker = WorkerProcess(env, tmp_path, int(env["KPIWATCH_WEB_PORT"]), f"w{len(workers)}")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_port}/hook", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def robot() -> Iterator[Robot]:
    """A local chat-robot server (tests/integration/sinks_support.py) for the sink tests."""
    with robot_server() as server:
        yield server
