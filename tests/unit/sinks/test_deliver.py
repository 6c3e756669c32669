"""deliver(): retry what may work later, stop on a refusal, honour Retry-After, give up in time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rules.alerts import Alert
from sinks.base import SinkError
from sinks.deliver import deliver
from sinks.memory import MemorySink
from sinks.webhook import WebhookSink

SECRET = "SECRET123"
URL = f"https://hooks.example.test/robot?access_token={SECRET}"
Handler = Callable[[httpx.Request], httpx.Response]
ClientFactory = Callable[[Handler], httpx.AsyncClient]
AlertFactory = Callable[..., Alert]


class Receiver:
    """A webhook receiver that answers from a script and counts the requests it got."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if len(self.responses) > 1:
            return self.responses.pop(0)
        return self.responses[0]


class FlakySink:
    """A sink that raises the given errors in turn, then delivers."""

    def __init__(self, *errors: SinkError) -> None:
        self.name = "flaky"
        self.errors = list(errors)
        self.calls = 0
        self.delivered: list[Alert] = []

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.extend(alerts)


@pytest.fixture
def webhook(mock_client: ClientFactory) -> Callable[[Receiver], WebhookSink]:
    return lambda receiver: WebhookSink(SecretStr(URL), mock_client(receiver))


async def within(seconds: float, delivery: Coroutine[Any, Any, bool]) -> bool:
    async with asyncio.timeout(seconds):
        return await delivery


async def test_delivers_at_the_first_try(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(200))
    assert await deliver(webhook(receiver), [make_alert()], base_delay=0.01) is True
    assert receiver.requests == 1


async def test_retries_a_503_then_succeeds(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(503), httpx.Response(503), httpx.Response(200))
    assert await deliver(webhook(receiver), [make_alert()], attempts=5, base_delay=0.01) is True
    assert receiver.requests == 3


async def test_retries_a_transport_error_then_succeeds(make_alert: AlertFactory) -> None:
    sink = FlakySink(SinkError("flaky", "request failed (ConnectError)", retryable=True))
    assert await deliver(sink, [make_alert()], base_delay=0.01) is True
    assert sink.calls == 2
    assert sink.delivered == [make_alert()]


@pytest.mark.parametrize("status", [400, 404])
async def test_stops_at_once_on_a_refusal(
    status: int, webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(status))
    assert await deliver(webhook(receiver), [make_alert()], attempts=5, base_delay=0.01) is False
    assert receiver.requests == 1


async def test_gives_up_after_the_given_attempts(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(503))
    assert await deliver(webhook(receiver), [make_alert()], attempts=3, base_delay=0.01) is False
    assert receiver.requests == 3


async def test_one_attempt_means_no_retry(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(500))
    assert await deliver(webhook(receiver), [make_alert()], attempts=1, base_delay=0.01) is False
    assert receiver.requests == 1


async def test_zero_attempts_sends_nothing(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(200))
    assert await deliver(webhook(receiver), [make_alert()], attempts=0) is False
    assert receiver.requests == 0


async def test_retry_after_replaces_a_long_backoff(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    # With a 60 s backoff, finishing at all within 2 s proves Retry-After: 0 was used.
    receiver = Receiver(httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200))
    sent = deliver(webhook(receiver), [make_alert()], attempts=3, base_delay=60, max_delay=60)
    assert await within(2, sent) is True
    assert receiver.requests == 2


async def test_retry_after_is_waited_for(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(503, headers={"Retry-After": "1"}), httpx.Response(200))
    started = time.monotonic()
    assert await deliver(webhook(receiver), [make_alert()], base_delay=0.001) is True
    assert time.monotonic() - started >= 1.0
    assert receiver.requests == 2


async def test_backoff_is_capped_by_max_delay(
    webhook: Callable[[Receiver], WebhookSink], make_alert: AlertFactory
) -> None:
    receiver = Receiver(httpx.Response(503))
    sent = deliver(webhook(receiver), [make_alert()], attempts=3, base_delay=60, max_delay=0.01)
    assert await within(2, sent) is False
    assert receiver.requests == 3


async def test_retries_and_give_up_are_logged_without_the_secret(
    caplog: pytest.LogCaptureFixture,
    webhook: Callable[[Receiver], WebhookSink],
    make_alert: AlertFactory,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sinks")
    receiver = Receiver(httpx.Response(503))
    await deliver(webhook(receiver), [make_alert()], attempts=2, base_delay=0.01)
    records = [r for r in caplog.records if r.name == "sinks.deliver"]
    assert [r.levelname for r in records] == ["WARNING", "ERROR"]
    assert records[0].getMessage().startswith("sink webhook: HTTP 503; retrying in ")
    assert records[1].getMessage() == (
        "giving up on 1 alert(s) after 2 attempt(s): sink webhook: HTTP 503"
    )
    assert all(SECRET not in r.getMessage() for r in caplog.records if r.name.startswith("sinks"))


async def test_transport_errors_are_logged_without_the_secret(
    caplog: pytest.LogCaptureFixture, mock_client: ClientFactory, make_alert: AlertFactory
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    caplog.set_level(logging.DEBUG, logger="sinks")
    sink = WebhookSink(SecretStr(URL), mock_client(refuse))
    assert await deliver(sink, [make_alert()], attempts=2, base_delay=0.01) is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all(SECRET not in m and "hooks.example.test" not in m for m in messages)


async def test_other_exceptions_are_not_swallowed(make_alert: AlertFactory) -> None:
    class Broken:
        name = "broken"

        async def send(self, alerts: Sequence[Alert]) -> None:
            raise RuntimeError("bug in a sink")

    with pytest.raises(RuntimeError, match="bug in a sink"):
        await deliver(Broken(), [make_alert()], base_delay=0.01)


async def test_memory_sink_keeps_what_it_is_given(make_alert: AlertFactory) -> None:
    sink = MemorySink()
    assert await deliver(sink, [make_alert("A")]) is True
    assert await deliver(sink, [make_alert("B")]) is True
    assert [a.labels["sku"] for a in sink.alerts] == ["A", "B"]
    assert sink.name == "memory"
