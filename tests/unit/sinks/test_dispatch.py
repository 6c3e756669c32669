"""The dispatcher: digests per route, one lane per sink, dedupe by idempotency key, shared rate
limits that queue and merge, dead-letters after the retry budget, and `done` only at the end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from rules.alerts import Alert
from sinks.base import SinkError
from sinks.config import Delivery, Mention, RateLimit
from sinks.dispatch import Dispatcher, Stages
from sinks.ledger import MemoryLedger
from sinks.load import load_setup_text
from sinks.memory import MemorySink
from sinks.render import Language
from sinks.route import Route

from .conftest import AlertFactory

FAST = Delivery(attempts=3, base_delay=0.01, max_delay=0.02, dedupe_window=60)


def tree(body: str = "") -> Route:
    text = "sinks:\n  - {name: a, type: console}\n  - {name: b, type: console}\n"
    default = (
        "route:\n  sinks: [a, b]\n  group_by: [rule]\n  group_wait: 0s\n  group_interval: 0s\n"
    )
    return load_setup_text(text + (body or default), "sinks.yaml", {}).route


class Flaky(MemorySink):
    """Refuses the first `failures` sends with `error`, then keeps what it gets."""

    def __init__(self, name: str, failures: int, error: SinkError | None = None) -> None:
        super().__init__(name)
        self.failures = failures
        self.error = error or SinkError(name, "HTTP 503", retryable=True)
        self.calls: list[float] = []

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.calls.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        await super().send(alerts)


class Recorder:
    def __init__(self) -> None:
        self.dead: list[tuple[str, list[str], str]] = []
        self.done: list[str] = []

    async def dead_letter(self, lane: str, alerts: Sequence[Alert], reason: str) -> None:
        self.dead.append((lane, [a.labels["sku"] for a in alerts], reason))


@pytest.fixture
async def running() -> AsyncIterator[list[Dispatcher]]:
    dispatchers: list[Dispatcher] = []
    yield dispatchers
    for dispatcher in dispatchers:
        await dispatcher.close()


async def start(
    running: list[Dispatcher],
    sinks: Mapping[str, MemorySink],
    stages: Stages,
    route: Route | None = None,
    limits: Mapping[str, RateLimit] | None = None,
) -> Dispatcher:
    dispatcher = Dispatcher(sinks, route or tree(), stages, limits=limits)
    running.append(dispatcher)
    dispatcher.start()
    return dispatcher


async def settle(dispatcher: Dispatcher, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while dispatcher.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert dispatcher.pending == 0


async def test_a_wave_is_one_digest_per_sink_and_done_after_both(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    a, b, rec = MemorySink("a"), MemorySink("b"), Recorder()
    dispatcher = await start(running, {"a": a, "b": b}, Stages(FAST))
    for n in range(40):
        await dispatcher.submit(make_alert(sku=f"S{n}"), lambda n=n: rec.done.append(f"S{n}"))
    await settle(dispatcher)
    assert len(a.alerts) == len(b.alerts) == 40
    assert sorted(rec.done) == sorted(f"S{n}" for n in range(40))


async def test_a_sink_that_is_down_does_not_hold_up_the_others(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    slow = Flaky("a", failures=2)
    b = MemorySink("b")
    stages = Stages(Delivery(attempts=5, base_delay=0.3, max_delay=0.3))
    dispatcher = await start(running, {"a": slow, "b": b}, stages)
    await dispatcher.submit(make_alert())
    await asyncio.sleep(0.1)
    assert len(b.alerts) == 1
    assert slow.alerts == []
    await settle(dispatcher)
    assert len(slow.alerts) == 1


async def test_a_refusal_is_dead_lettered_at_once_and_the_alert_is_done(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    refused = Flaky("a", 1, SinkError("a", "HTTP 400", retryable=False))
    rec = Recorder()
    dispatcher = await start(
        running, {"a": refused, "b": MemorySink("b")}, Stages(FAST, dead_letter=rec.dead_letter)
    )
    await dispatcher.submit(make_alert(sku="X"), lambda: rec.done.append("X"))
    await settle(dispatcher)
    assert rec.dead == [("a", ["X"], "sink a: HTTP 400")]
    assert len(refused.calls) == 1
    assert rec.done == ["X"]


async def test_after_the_retry_budget_the_alert_is_dead_lettered(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    down, rec = Flaky("a", 99), Recorder()
    dispatcher = await start(
        running, {"a": down, "b": MemorySink("b")}, Stages(FAST, dead_letter=rec.dead_letter)
    )
    await dispatcher.submit(make_alert(sku="X"))
    await settle(dispatcher)
    assert len(down.calls) == FAST.attempts
    assert rec.dead == [("a", ["X"], "sink a: HTTP 503")]


async def test_a_transition_read_again_is_not_sent_again(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    a, b, rec = MemorySink("a"), MemorySink("b"), Recorder()
    stages = Stages(FAST, ledger=MemoryLedger())
    dispatcher = await start(running, {"a": a, "b": b}, stages)
    await dispatcher.submit(make_alert())
    await settle(dispatcher)
    # As after a crash between send and commit: same alert, fresh dispatcher, same ledger.
    again = await start(running, {"a": a, "b": b}, stages)
    await again.submit(make_alert(), lambda: rec.done.append("again"))
    await settle(again)
    assert len(a.alerts) == len(b.alerts) == 1
    assert rec.done == ["again"]


async def test_a_burst_over_the_rate_limit_is_queued_and_merged_not_dropped(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    robot = Flaky("a", 0)
    route = tree(
        "route:\n  sinks: [a]\n  group_by: [sku]\n  group_wait: 0s\n  group_interval: 0s\n"
    )
    limit = RateLimit(messages=2, per=0.5)
    dispatcher = await start(running, {"a": robot}, Stages(FAST), route, {"a": limit})
    started = time.monotonic()
    for n in range(12):
        await dispatcher.submit(make_alert(sku=f"S{n}"))
        await asyncio.sleep(0.01)
    await settle(dispatcher)
    assert sorted(a.labels["sku"] for a in robot.alerts) == sorted(f"S{n}" for n in range(12))
    assert len(robot.calls) < 12  # merged into digests
    for i, call in enumerate(robot.calls):
        in_window = [c for c in robot.calls if call - 0.5 < c <= call]
        assert len(in_window) <= 2, (i, robot.calls, started)


async def test_muted_alerts_are_done_without_a_send(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    class MuteSku:
        async def muted(self, alert: Alert, labels: Mapping[str, str]) -> bool:
            return labels.get("sku") == "quiet"

    a, rec = MemorySink("a"), Recorder()
    dispatcher = Dispatcher({"a": a, "b": MemorySink("b")}, tree(), Stages(FAST), mute=MuteSku())
    running.append(dispatcher)
    dispatcher.start()
    await dispatcher.submit(make_alert(sku="quiet"), lambda: rec.done.append("quiet"))
    await dispatcher.submit(make_alert(sku="loud"))
    await settle(dispatcher)
    assert [x.labels["sku"] for x in a.alerts] == ["loud"]
    assert rec.done == ["quiet"]


async def test_a_route_language_gets_its_own_variant_of_the_sink(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    base, english = MemorySink("a"), MemorySink("a")
    variants: list[tuple[str, Language | None]] = []

    def variant(name: str, language: Language | None, mention: Mention | None) -> MemorySink:
        variants.append((name, language))
        return english

    route = tree(
        "route:\n  sinks: [a]\n  group_wait: 0s\n  routes:\n"
        "    - {match: {sku: EN}, language: en}\n"
    )
    dispatcher = Dispatcher({"a": base, "b": MemorySink("b")}, route, Stages(FAST), variant=variant)
    running.append(dispatcher)
    dispatcher.start()
    await dispatcher.submit(make_alert(sku="EN"))
    await dispatcher.submit(make_alert(sku="EN", status="resolved"))
    await dispatcher.submit(make_alert(sku="ZH"))
    await settle(dispatcher)
    assert [x.status for x in english.alerts] == ["firing", "resolved"]
    assert [x.labels["sku"] for x in base.alerts] == ["ZH"]
    assert variants == [("a", "en")]


async def test_retries_take_rate_limit_slots_too(
    running: list[Dispatcher], make_alert: AlertFactory
) -> None:
    busy = Flaky("a", 4, SinkError("a", "HTTP 429", retryable=True, retry_after=0))
    route = tree("route:\n  sinks: [a]\n  group_wait: 0s\n")
    stages = Stages(Delivery(attempts=6, base_delay=0.0, max_delay=0.0))
    dispatcher = await start(
        running, {"a": busy}, stages, route, {"a": RateLimit(messages=2, per=0.5)}
    )
    await dispatcher.submit(make_alert())
    await settle(dispatcher)
    assert len(busy.alerts) == 1
    assert len(busy.calls) == 5
    for call in busy.calls:
        assert len([c for c in busy.calls if call - 0.5 < c <= call]) <= 2
