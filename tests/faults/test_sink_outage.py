"""Guarantee 2, sink outage: a webhook and an Alertmanager (Debian's, behind a proxy that
misbehaves on purpose) are down for twelve seconds, first refusing connections, then answering
503, then answering only after the request timed out, while a worker on the real Kafka and
Redis delivers alert transitions to both. Retries (3 attempts, 0.2-0.4 s apart, 0.5 s per
request: time scaled down, not the logic) cover what the outage only delays; what exhausts them
is on `alerts-dead-letter` with the last error as its reason, and `kpiwatch alerts resend`
delivers it once the sinks are back. Afterwards every transition has reached both receivers, in
order per fingerprint, and none was sent again after a receiver had answered for it in time.
The only repeats a receiver sees follow an answer that came too late (the slow phase), carry the
same idempotency key, and are dropped by a receiver that keeps keys. One firing whose resolve
was delivered before the resend is skipped by it as superseded, on purpose."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from faults.conftest import OwnServices
from integration.sinks_support import produce
from integration.support import (
    REPO,
    Services,
    WorkerFactory,
    WorkerProcess,
    free_port,
    read_topic,
)

from rules.alerts import Alert, Status, fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.faults]

Phase = Literal["up", "refuse", "error", "slow"]
PHASE_S = (
    4.0  # each way of being down lasts this long (retries run out in ~0.6 s, or ~2.1 s if slow)
)
TIMEOUT_S = 0.5  # delivery.timeout in the sinks file
SLOW_S = 0.8  # a slow answer comes this late: after the worker gave up on it
REASONS = ("request failed (ConnectError)", "HTTP 503", "request failed (ReadTimeout)")
RULE = "stock-gone"
SINKS = ("hook", "am")


@dataclass(frozen=True)
class Arrival:
    """One request a receiver took in: when it came, the keys of its alerts (in order), whether
    its answer reached the sender in time."""

    at: float
    keys: tuple[str, ...]
    in_time: bool


@dataclass
class Receiver:
    """A receiver on a fixed port of 127.0.0.1 that can be up, refuse connections (nothing
    listens), answer 503, or answer after SLOW_S (it keeps what it got: only the answer is late).
    With `upstream` it is a proxy: what it keeps it forwards to that Alertmanager."""

    upstream: str | None = None
    phase: Phase = "up"
    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + ("" if self.upstream else "/hook")

    def become(self, phase: Phase) -> None:
        if phase == "refuse":
            self._close()
        elif self.server is None:
            self._open()
        self.phase = phase

    def _open(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _close(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
        self.server = self.thread = None

    def take(self, at: float, path: str, body: bytes, late: bool) -> int:
        status = 200
        if self.upstream is not None:
            headers = {"content-type": "application/json"}
            status = httpx.post(self.upstream + path, content=body, headers=headers).status_code
        keys = tuple(_key(item) for item in _alerts(json.loads(body)))
        with self.lock:
            self.arrivals.append(Arrival(at, keys, not late))
            self.arrivals.sort(key=lambda arrival: arrival.at)
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                at, phase = time.monotonic(), receiver.phase
                if phase == "error":
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                if phase == "slow":
                    time.sleep(SLOW_S)
                status = receiver.take(at, self.path, body, late=phase == "slow")
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def keys(self) -> list[str]:
        with self.lock:
            return [key for arrival in self.arrivals for key in arrival.keys]

    def answered(self) -> set[str]:
        with self.lock:
            return {key for a in self.arrivals if a.in_time for key in a.keys}


def _alerts(body: Any) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = body["alerts"] if isinstance(body, dict) else body
    return alerts


def _key(item: dict[str, Any]) -> str:
    """An alert's idempotency key, from a webhook alert or an Alertmanager postable alert."""
    if "key" in item:
        key: str = item["key"]
        return key
    labels = dict(item["labels"])
    rule, severity = labels.pop("alertname"), labels.pop("severity")
    # A firing is posted with startsAt (and an endsAt ahead, which its re-posts push on).
    status, at = (
        ("firing", item["startsAt"]) if "startsAt" in item else ("resolved", item["endsAt"])
    )
    return f"{fingerprint(rule, labels)}:{status}:{severity}:{at}"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.become("up")
    try:
        yield receiver
    finally:
        receiver.become("refuse")


@pytest.fixture
def am(own_services: OwnServices) -> Iterator[Receiver]:
    """Debian's Alertmanager of this test's own, behind a misbehaving proxy."""
    port = free_port()
    own_services.env["KPIWATCH_ALERTMANAGER_PORT"] = str(port)
    own_services.start("alertmanager")
    receiver = Receiver(upstream=f"http://127.0.0.1:{port}")
    receiver.become("up")
    try:
        yield receiver
    finally:
        receiver.become("refuse")


def transition(store: str, sku: str, status: Status = "firing") -> Alert:
    """Stamped now: Alertmanager takes a resolve's endsAt as the time it ended."""
    labels = {"platform": "amazon", "marketplace": "US", "store": store, "sku": sku}
    return Alert(
        rule=RULE,
        severity="critical",
        status=status,
        labels=labels,
        value=Decimal(0),
        threshold="<= 0",
        window_start=None,
        window_end=None,
        at=datetime.now(UTC),
        kpi="available",
        fingerprint=fingerprint(RULE, labels),
        summary=f"{store} {sku} {status}",
    )


def sinks_file(tmp_path: Path, am_url: str) -> Path:
    path = tmp_path / "sinks.yaml"
    path.write_text(
        "sinks:\n"
        "  - {name: hook, type: webhook, url: {env: HOOK_URL}}\n"
        # Re-posts of firing alerts are Alertmanager's keep-alive, not deliveries: none here
        # (tests/integration/test_sinks_alertmanager_resend.py tests them).
        f"  - {{name: am, type: alertmanager, url: '{am_url}', resend_interval: 1h}}\n"
        "route:\n  sinks: [hook, am]\n  group_by: [store]\n"
        "  group_wait: 0.2s\n  group_interval: 0.2s\n"
        f"delivery:\n  attempts: 3\n  base_delay: 0.2s\n  max_delay: 0.4s\n"
        f"  timeout: {TIMEOUT_S}s\n"
    )
    return path


@dataclass
class Stream:
    """The transitions the test sends to the worker's alerts topic, in order."""

    services: Services
    topic: str
    sent: list[Alert] = field(default_factory=list)

    async def send(self, store: str, skus: range, status: Status = "firing") -> list[Alert]:
        alerts = [transition(store, f"K{n}", status) for n in skus]
        await produce(self.services.kafka_bootstrap, self.topic, alerts)
        self.sent += alerts
        return alerts

    async def again(self, alert: Alert) -> None:
        """The same transition once more, as a pipeline cut mid-batch re-emits it."""
        await produce(self.services.kafka_bootstrap, self.topic, [alert])


async def dead_letters(services: Services, prefix: str) -> list[dict[str, Any]]:
    topic = f"{prefix}alerts-dead-letter"
    return await read_topic(services.kafka_bootstrap, topic, until=lambda _: True, timeout=30)


async def settled(
    services: Services, prefix: str, receivers: dict[str, Receiver], sent: list[Alert]
) -> list[dict[str, Any]]:
    """Wait until each sink has delivered (answered in time) or dead-lettered every transition;
    the dead-letter records then."""
    deadline = time.monotonic() + 60
    while True:
        records = await dead_letters(services, prefix)
        dead = {
            s: {Alert.model_validate(a).key for r in records if r["sink"] == s for a in r["alerts"]}
            for s in SINKS
        }
        pending = {
            sink: [a.key for a in sent if a.key not in receiver.answered() | dead[sink]]
            for sink, receiver in receivers.items()
        }
        if not any(pending.values()):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"never delivered nor dead-lettered: {pending}")
        await asyncio.sleep(0.5)


def resend(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "alerts", "resend", *args],
        env=env, cwd=REPO, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


async def outage(stream: Stream, receivers: dict[str, Receiver]) -> Alert:
    """Refused, then 503, then too slow, PHASE_S each; transitions keep coming all along: a
    burst at the start of each phase (its retries run out inside it), more mid-phase. Once the
    receivers are back, one dead-lettered firing comes again on the topic (the worker sends it:
    the resend finds it delivered) and another one's resolve is sent (that firing is superseded:
    returned)."""
    before = await stream.send("before", range(6))
    await wait_answered(receivers, before)
    superseded: Alert | None = None
    refused: list[Alert] = []
    phases: tuple[Phase, ...] = ("refuse", "error", "slow")
    for phase in phases:
        for receiver in receivers.values():
            receiver.become(phase)
        burst = await stream.send(phase, range(4))
        superseded = superseded or (burst[0] if phase == "error" else None)
        refused = refused or burst
        await asyncio.sleep(PHASE_S / 2)
        if phase == "slow":
            await stream.send("late", range(2))
        else:
            first = 0 if phase == "refuse" else 3
            await stream.send("before", range(first, first + 3), "resolved")
        await asyncio.sleep(PHASE_S / 2)
    for receiver in receivers.values():
        receiver.become("up")
    assert superseded is not None
    await stream.again(refused[1])
    await stream.send("error", range(1), "resolved")
    await stream.send("after", range(3))
    await wait_answered(receivers, [refused[1]])
    return superseded


async def wait_answered(receivers: dict[str, Receiver], alerts: list[Alert]) -> None:
    deadline = time.monotonic() + 60
    keys = {a.key for a in alerts}
    while not all(keys <= r.answered() for r in receivers.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("not delivered")
        await asyncio.sleep(0.2)


async def test_an_outage_then_resend_delivers_every_alert_once_in_order(
    services: Services,
    worker_factory: WorkerFactory,
    prefix: str,
    hook: Receiver,
    am: Receiver,
    tmp_path: Path,
) -> None:
    receivers = {"hook": hook, "am": am}
    worker = worker_factory(prefix, instance_id=f"{prefix}w0", extra={"HOOK_URL": hook.url})
    worker.env["KPIWATCH_SINKS_FILE"] = str(sinks_file(tmp_path, am.url))
    worker.env["KPIWATCH_REDIS_URL"] = services.redis_url
    worker.start()
    stream = Stream(services, f"{prefix}alerts")
    stale = await outage(stream, receivers)

    records = await settled(services, prefix, receivers, stream.sent)
    for sink in SINKS:
        reasons = {r["reason"] for r in records if r["sink"] == sink}
        assert reasons == {f"sink {sink}: {reason}" for reason in REASONS}, reasons
        assert all(r["alerts"] for r in records if r["sink"] == sink)
    dead = {
        s: [Alert.model_validate(a).key for r in records if r["sink"] == s for a in r["alerts"]]
        for s in SINKS
    }
    assert stale.key in dead["hook"]
    assert stale.key in dead["am"]

    resend_runs(worker.env, records, hook, am)

    # The firings still open resolve; the "after" ones stay firing in Alertmanager.
    for store, count in (("refuse", 4), ("slow", 4), ("late", 2)):
        await stream.send(store, range(count), "resolved")
    await stream.send("error", range(1, 4), "resolved")
    expected = [a for a in stream.sent if a.key != stale.key]
    await wait_answered(receivers, expected)
    await asyncio.sleep(2)  # anything sent twice would arrive by now

    for receiver in receivers.values():
        assert_delivered_once_in_order(receiver, expected, stale)
    active = httpx.get(
        f"{am.upstream or ''}/api/v2/alerts", params={"filter": f"alertname={RULE}"}, timeout=10
    ).json()
    assert sorted(a["labels"]["sku"] for a in active if a["labels"]["store"] == "after") == [
        "K0",
        "K1",
        "K2",
    ]
    assert {a["labels"]["store"] for a in active} == {"after"}
    figures(receivers, records, dead, expected)
    assert_alive(worker)


def resend_runs(
    env: dict[str, str], records: list[dict[str, Any]], hook: Receiver, am: Receiver
) -> None:
    """`kpiwatch alerts resend`: a dry run, the webhook's records, everything, then again."""
    arrived = (len(hook.arrivals), len(am.arrivals))
    dry = resend(env, "--dry-run", "--since", "1h")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would send: ") == len(records), dry.stdout
    none = resend(env, "--dry-run", "--since", datetime.now(UTC).isoformat())
    assert none.stderr == (
        "kpiwatch alerts resend: 0 dead-letter record(s): 0 alert(s) would send, "
        "0 already delivered, 0 superseded, 0 record(s) already re-sent, 0 record(s) failed\n"
    )
    assert (len(hook.arrivals), len(am.arrivals)) == arrived, "a dry run sends nothing"

    first = resend(env, "--sink", "hook")
    assert first.returncode == 0, first.stderr
    assert len(hook.arrivals) > arrived[0]
    assert len(am.arrivals) == arrived[1], "--sink hook sends nothing to am"
    # Then everything: the webhook's records are marked as re-sent, the Alertmanager's go out.
    second = resend(env)
    assert second.returncode == 0, second.stderr
    hook_records = sum(1 for r in records if r["sink"] == "hook")
    assert second.stdout.count("already re-sent: hook ") == hook_records, second.stdout
    assert len(am.arrivals) > arrived[1]
    for output in (first.stdout, second.stdout):
        assert output.count(", 1 already delivered") == 1, output
        assert output.count("1 superseded by a newer transition delivered") == 1, output

    print(first.stderr + second.stderr, end="")
    arrived = (len(hook.arrivals), len(am.arrivals))
    third = resend(env)
    assert third.returncode == 0, third.stderr
    assert third.stdout.count("already re-sent: ") == len(records), third.stdout
    assert (len(hook.arrivals), len(am.arrivals)) == arrived, "a second run sends nothing"


def assert_alive(worker: WorkerProcess) -> None:
    """Still the process first started, and no agent of it crashed."""
    assert worker.process is not None
    assert worker.process.poll() is None, worker.tail()
    assert worker.starts == 1
    log = worker.log.read_text(errors="replace")
    assert "Crashed reason" not in log, worker.tail(120)
    assert "Traceback" not in log, worker.tail(120)


def assert_delivered_once_in_order(receiver: Receiver, expected: list[Alert], stale: Alert) -> None:
    """Every transition answered in time exactly once and never arriving after that answer (so
    its only repeats followed answers that came too late); each fingerprint's transitions first
    arrived in the order they happened; the superseded firing never arrived."""
    with receiver.lock:
        arrivals = list(receiver.arrivals)
    in_time = Counter(key for a in arrivals if a.in_time for key in a.keys)
    assert set(in_time) == {a.key for a in expected}
    assert max(in_time.values()) == 1
    answered: set[str] = set()
    for arrival in arrivals:
        again = answered.intersection(arrival.keys)
        assert not again, f"sent again after it was answered: {again}"
        if arrival.in_time:
            answered.update(arrival.keys)
    assert stale.key not in set(receiver.keys())
    first: dict[str, list[str]] = {}
    for key in dict.fromkeys(receiver.keys()):
        fp, status = key.split(":")[:2]
        first.setdefault(fp, []).append(status)
    want: dict[str, list[str]] = {}
    for alert in expected:
        want.setdefault(alert.fingerprint, []).append(alert.status)
    assert first == want


def figures(
    receivers: dict[str, Receiver],
    records: list[dict[str, Any]],
    dead: dict[str, list[str]],
    expected: list[Alert],
) -> None:
    for sink, receiver in receivers.items():
        keys = receiver.keys()
        print(
            f"{sink}: {len(expected)} transitions delivered, "
            f"{sum(1 for r in records if r['sink'] == sink)} dead-letter records holding "
            f"{len(dead[sink])} alerts, {len(keys) - len(set(keys))} repeats after late "
            f"answers, {receiver.refused} requests answered 503"
        )
