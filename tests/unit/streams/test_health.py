"""streams/health.py: what /ready answers at each step of a real (unstarted) Faust app's
recovery, and streams/faststore.py's progress lines. The worker's endpoints themselves are
checked against a real broker in tests/integration/test_worker.py."""

from __future__ import annotations

import time
from typing import Any

import faust
import pytest

from streams import faststore
from streams.health import Readiness


@pytest.fixture
def app() -> Any:
    return faust.App("health-test", broker="kafka://127.0.0.1:1", store="memory://")


def test_not_ready_until_faust_recovery_completes(app: Any) -> None:
    readiness = Readiness(app)
    assert readiness.check() == (False, {"status": "starting"})
    app.tables.recovery.completed.set()
    assert readiness.check() == (True, {"status": "ready"})


def test_not_ready_while_a_rebalance_recovers_again(app: Any) -> None:
    readiness = Readiness(app)
    app.tables.recovery.completed.set()
    app.tables.recovery._set_recovery_started()
    assert readiness.check() == (False, {"status": "recovering", "loading": []})
    app.tables.recovery._set_recovery_ended()
    assert readiness.check()[0] is True


def test_not_ready_while_a_changelog_loads(app: Any) -> None:
    readiness = Readiness(app)
    app.tables.recovery.completed.set()
    load = faststore.Load("app-state-changelog", [0, 2], total=1000, read=250, records=240)
    faststore.LOADS.add(load)
    try:
        ready, why = readiness.check()
    finally:
        faststore.LOADS.discard(load)
    assert not ready
    assert why["status"] == "recovering"
    assert why["loading"][0] | {"seconds": 0} == {
        "topic": "app-state-changelog",
        "partitions": [0, 2],
        "offsets_read": 250,
        "offsets_total": 1000,
        "records": 240,
        "seconds": 0,
    }
    assert readiness.check()[0] is True


def test_progress_line_says_how_far_and_how_long() -> None:
    load = faststore.Load(
        "app-state-changelog", [1, 3], total=2_000_000, read=500_000, records=499_000
    )
    load.began = time.monotonic() - 5.04
    assert load.progress() == (
        "app-state-changelog: restoring partition(s) [1, 3]: 500,000 of 2,000,000 offset(s)"
        " (25%), 499,000 key write(s), 5.0 s"
    )
    # Not the final line's words, which tools parse (bench/recovery.py, tests/integration).
    assert " record(s) of partition(s) " not in load.progress()
    assert faststore.LOADING not in load.progress()
