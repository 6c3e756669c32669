"""Fixtures for the fault suite (README "Guarantees"): the integration fixtures (real Kafka and
Redis from deploy/services.sh, worker subprocesses, webhook servers), plus services of a test's
own (`own_services`) for the tests that stop, restart or empty a service: those never touch the
broker and Redis the rest of the session shares."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.conftest import prefix, robot, services, webhook, worker_factory
from integration.support import Services, free_port, services_sh

__all__ = ["own_services", "prefix", "robot", "services", "webhook", "worker_factory"]


class OwnServices:
    """deploy/services.sh on ports and a state folder of this test's own; stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            "KPIWATCH_SERVICES_DIR": str(root),
            "KPIWATCH_KAFKA_PORT": str(free_port()),
            "KPIWATCH_KAFKA_CONTROLLER_PORT": str(free_port()),
            "KPIWATCH_REDIS_PORT": str(free_port()),
        }
        self.started: set[str] = set()

    def run(self, *args: str, **extra: str) -> str:
        env = {**self.env, **extra}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            return services_sh(*args)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def start(self, name: str, *, keep_data: bool = False) -> None:
        """Start `name`; `keep_data` restarts Kafka on the topics it had (deploy/services.sh
        runs Redis without persistence: a restarted one is empty)."""
        self.run("start", name, KPIWATCH_KAFKA_KEEP_DATA="1" if keep_data else "")
        self.started.add(name)

    def stop(self, name: str) -> None:
        self.run("stop", name)

    @property
    def services(self) -> Services:
        return Services(
            f"127.0.0.1:{self.env['KPIWATCH_KAFKA_PORT']}",
            f"redis://127.0.0.1:{self.env['KPIWATCH_REDIS_PORT']}/0",
        )


@pytest.fixture
def own_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServices]:
    own = OwnServices(tmp_path_factory.mktemp("services"))
    try:
        yield own
    finally:
        for name in sorted(own.started):
            own.stop(name)
