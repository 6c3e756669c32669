"""The generic webhook: payload shape, which failures are retryable, and the URL kept secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

import httpx
import pytest
from pydantic import SecretStr

from rules.alerts import Alert
from sinks.base import SinkError
from sinks.webhook import WebhookSink

SECRET = "SECRET123"
URL = f"https://hooks.example.test/robot?access_token={SECRET}"
Handler = Callable[[httpx.Request], httpx.Response]
ClientFactory = Callable[[Handler], httpx.AsyncClient]
AlertFactory = Callable[..., Alert]
WebhookFactory = Callable[[Handler], WebhookSink]
Failure = Callable[..., Awaitable[SinkError]]


def refuse_connection(request: httpx.Request) -> httpx.Response:
    # Real transport errors name the URL they failed on; the sink must not pass it on.
    raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)


def time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout(f"timed out reading {request.url}", request=request)


@pytest.fixture
def webhook(mock_client: ClientFactory) -> WebhookFactory:
    return lambda handler: WebhookSink(SecretStr(URL), mock_client(handler))


@pytest.fixture
def failure(webhook: WebhookFactory, make_alert: AlertFactory) -> Failure:
    """Send one alert to a receiver answering `status`; return the SinkError raised."""

    async def send(status: int, headers: dict[str, str] | None = None) -> SinkError:
        sink = webhook(lambda request: httpx.Response(status, headers=headers))
        with pytest.raises(SinkError) as caught:
            await sink.send([make_alert()])
        return caught.value

    return send


async def test_posts_version_and_alerts_as_json_to_the_url(
    webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    alerts = [make_alert("A"), make_alert("B")]
    await webhook(handler).send(alerts)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    want = [{**a.model_dump(mode="json"), "key": a.key} for a in alerts]
    assert body == {"version": "1", "alerts": want}


async def test_a_repeat_of_the_same_alerts_has_the_same_idempotency_key(
    webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sink = webhook(handler)
    await sink.send([make_alert("A"), make_alert("B")])
    await sink.send([make_alert("B"), make_alert("A")])
    await sink.send([make_alert("A")])
    keys = [request.headers["idempotency-key"] for request in seen]
    assert keys[0] == keys[1] != keys[2]


async def test_payload_alert_carries_what_a_receiver_needs(
    webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(204)

    await webhook(handler).send([make_alert()])
    (alert,) = json.loads(seen[0])["alerts"]
    assert alert["rule"] == "acos-high"
    assert alert["severity"] == "warning"
    assert alert["status"] == "firing"
    assert alert["labels"]["sku"] == "A"
    assert alert["value"] == "0.4"
    assert alert["threshold"] == "> 35%"
    assert alert["window_start"] == "2026-11-23T08:00:00Z"
    assert alert["window_end"] == "2026-11-24T08:00:00Z"
    assert alert["at"] == "2026-11-23T18:00:00Z"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_delivered(
    status: int, webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    await webhook(lambda request: httpx.Response(status)).send([make_alert()])


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retryable(status: int, failure: Failure) -> None:
    error = await failure(status)
    assert (error.retryable, error.retry_after) == (True, None)
    assert str(error) == f"sink webhook: HTTP {status}"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_other_4xx_is_not_retryable(status: int, failure: Failure) -> None:
    error = await failure(status)
    assert error.retryable is False
    assert str(error) == f"sink webhook: HTTP {status}"


async def test_429_is_retryable_after_the_time_the_receiver_asks(failure: Failure) -> None:
    error = await failure(429, {"Retry-After": "2"})
    assert (error.retryable, error.retry_after) == (True, 2.0)


async def test_503_keeps_its_retry_after(failure: Failure) -> None:
    error = await failure(503, {"Retry-After": "0"})
    assert (error.retryable, error.retry_after) == (True, 0.0)


async def test_negative_retry_after_counts_as_zero(failure: Failure) -> None:
    assert (await failure(429, {"Retry-After": "-5"})).retry_after == 0.0


async def test_retry_after_as_a_date_is_ignored(failure: Failure) -> None:
    error = await failure(429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})
    assert (error.retryable, error.retry_after) == (True, None)


async def test_non_finite_retry_after_is_ignored(failure: Failure) -> None:
    assert (await failure(429, {"Retry-After": "inf"})).retry_after is None


async def test_transport_error_is_retryable_and_names_only_its_class(
    webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    with pytest.raises(SinkError) as caught:
        await webhook(refuse_connection).send([make_alert()])
    assert caught.value.retryable is True
    assert str(caught.value) == "sink webhook: request failed (ConnectError)"


async def test_transport_error_does_not_chain_the_httpx_error(
    webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    # A chained cause would print the URL in every traceback.
    with pytest.raises(SinkError) as caught:
        await webhook(refuse_connection).send([make_alert()])
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


async def test_timeout_is_retryable(webhook: WebhookFactory, make_alert: AlertFactory) -> None:
    with pytest.raises(SinkError) as caught:
        await webhook(time_out).send([make_alert()])
    assert caught.value.retryable is True
    assert str(caught.value) == "sink webhook: request failed (ReadTimeout)"


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
async def test_secret_url_is_not_in_http_errors(status: int, failure: Failure) -> None:
    error = await failure(status, {"Retry-After": "1"})
    assert SECRET not in str(error)
    assert "hooks.example.test" not in str(error)


@pytest.mark.parametrize("handler", [refuse_connection, time_out])
async def test_secret_url_is_not_in_transport_errors(
    handler: Handler, webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    with pytest.raises(SinkError) as caught:
        await webhook(handler).send([make_alert()])
    assert SECRET not in str(caught.value)
    assert "hooks.example.test" not in str(caught.value)


async def test_secret_url_is_not_in_kpiwatch_logs(
    caplog: pytest.LogCaptureFixture,
    webhook: WebhookFactory,
    failure: Failure,
    make_alert: AlertFactory,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sinks")
    with pytest.raises(SinkError):
        await webhook(refuse_connection).send([make_alert()])
    await failure(500)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_secret_url_is_not_in_any_log_line(
    caplog: pytest.LogCaptureFixture, webhook: WebhookFactory, make_alert: AlertFactory
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(SinkError):
        await webhook(lambda request: httpx.Response(500)).send([make_alert()])
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_sink_takes_its_name(mock_client: ClientFactory) -> None:
    client = mock_client(lambda request: httpx.Response(200))
    sink = WebhookSink(SecretStr(URL), client, name="ops-robot")
    assert sink.name == "ops-robot"
