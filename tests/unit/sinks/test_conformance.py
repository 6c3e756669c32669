"""Every registered HTTP sink, one contract: the platform's payload and signature, which
failures are retried, and no secret in any log line or error.

Signatures are checked by verifiers written here from each platform's documented algorithm,
not by calling the sinks' own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rules.alerts import Alert
from sinks.base import Sink, SinkError
from sinks.load import load_text
from sinks.registry import SINK_TYPES, build

URL = "https://hooks.example.test/robot/send?access_token=TOKEN-SECRET-1"
SIGNING = "SEC-SIGNING-SECRET-2"
ENVIRON = {"SINK_URL": URL, "SINK_SIGNING": SIGNING}
Handler = Callable[[httpx.Request], httpx.Response]
ClientFactory = Callable[[Handler], httpx.AsyncClient]
AlertFactory = Callable[..., Alert]


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def check_dingtalk(request: httpx.Request) -> None:
    # Documented: sign = urlEncode(base64(HmacSHA256(key=secret, "timestamp\nsecret"))),
    # timestamp in milliseconds, within an hour of the server's clock.
    query = parse_qs(urlsplit(str(request.url)).query)
    assert query["access_token"] == ["TOKEN-SECRET-1"]
    (timestamp,) = query["timestamp"]
    assert abs(int(timestamp) - time.time() * 1000) < 3_600_000
    expected = hmac.new(SIGNING.encode(), f"{timestamp}\n{SIGNING}".encode(), hashlib.sha256)
    assert query["sign"] == [base64.b64encode(expected.digest()).decode()]
    body = body_of(request)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"].startswith("【警告】acos-high")
    assert "SKU A" in body["markdown"]["text"]
    assert body["markdown"]["text"].endswith("@13800001111")
    assert body["at"] == {"atMobiles": ["13800001111"], "isAtAll": False}


def check_feishu(request: httpx.Request) -> None:
    # Documented: sign = base64(HmacSHA256(key="timestamp\nsecret", message="")), seconds,
    # sent in the body next to the message.
    body = body_of(request)
    timestamp = body["timestamp"]
    assert isinstance(timestamp, str)
    assert abs(int(timestamp) - time.time()) < 3600
    key = f"{timestamp}\n{SIGNING}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["title"] == {
        "tag": "plain_text",
        "content": "【警告】acos-high：acos 40.00%",  # noqa: RUF001 - Chinese colon
    }
    assert card["header"]["template"] == "orange"
    (element,) = card["elements"]
    assert element["tag"] == "div"
    assert element["text"]["tag"] == "lark_md"
    assert element["text"]["content"].endswith("<at id=ou_123></at>")


def check_wecom(request: httpx.Request) -> None:
    body = body_of(request)
    assert body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert "SKU A" in content
    assert content.endswith("<@zhangsan>")
    assert len(content.encode()) <= 4096


def check_slack(request: httpx.Request) -> None:
    body = body_of(request)
    assert body["text"] == "[WARNING] acos-high: acos 40.00%"
    header, section = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": body["text"]}}
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert "&gt; 35%" in section["text"]["text"]  # Slack's escaping of >


def check_teams(request: httpx.Request) -> None:
    body = body_of(request)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert [b["type"] for b in card["body"]] == ["TextBlock", "TextBlock", "FactSet"]
    assert {"title": "Threshold", "value": "> 35%"} in card["body"][2]["facts"]


def check_webhook(request: httpx.Request) -> None:
    # Ours, documented in sinks/webhook.py: "sha256=" + hex HMAC-SHA256(secret, raw body).
    digest = hmac.new(SIGNING.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["x-kpiwatch-signature"] == f"sha256={digest}"
    assert body_of(request)["version"] == "1"


def check_alertmanager(request: httpx.Request) -> None:
    assert str(request.url) == "http://am.example.test:9093/api/v2/alerts"
    assert request.headers["authorization"] == f"Bearer {SIGNING}"
    (alert,) = body_of(request)
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    # Firing: endsAt ahead (4 resend intervals), so Alertmanager keeps it while it is re-posted.
    ends = datetime.fromisoformat(alert["endsAt"])
    assert timedelta(minutes=3) < ends - datetime.now(UTC) <= timedelta(minutes=4)
    assert alert["labels"]["alertname"] == "acos-high"
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["sku"] == "A"
    assert alert["startsAt"] == "2026-11-23T18:00:00+00:00"
    assert alert["annotations"]["summary"].startswith("[WARNING] acos-high")
    assert alert["generatorURL"] == "https://kpiwatch.example.test/rules"


@dataclass(frozen=True)
class Case:
    yaml: str
    check: Callable[[httpx.Request], None]
    # Platforms that answer errors with a code in a 200 JSON body: (rate-limit code, its
    # retry_after, a refusal code) and the body keys.
    codes: tuple[int, float | None, int] | None = None
    keys: tuple[str, str] = ("errcode", "errmsg")
    secrets: tuple[str, ...] = field(default=(URL, "TOKEN-SECRET-1", SIGNING))


URL_ENV = "url: {env: SINK_URL}"
URL_ONLY = (URL, "TOKEN-SECRET-1")  # sinks with no signing secret may show SIGNING
CASES: dict[str, Case] = {
    "dingtalk": Case(
        f"{URL_ENV}\n    secret: {{env: SINK_SIGNING}}\n    mention_mobiles: ['13800001111']",
        check_dingtalk,
        codes=(130101, 600.0, 310000),
    ),
    "feishu": Case(
        f"{URL_ENV}\n    secret: {{env: SINK_SIGNING}}\n    mention_user_ids: [ou_123]",
        check_feishu,
        codes=(11232, None, 19021),
        keys=("code", "msg"),
    ),
    "wecom": Case(
        f"{URL_ENV}\n    mention_user_ids: [zhangsan]",
        check_wecom,
        codes=(45009, 60.0, 93000),
        secrets=URL_ONLY,
    ),
    "slack": Case(URL_ENV, check_slack, secrets=URL_ONLY),
    "teams": Case(URL_ENV, check_teams, secrets=URL_ONLY),
    "webhook": Case(f"{URL_ENV}\n    signing_secret: {{env: SINK_SIGNING}}", check_webhook),
    "alertmanager": Case(
        "url: http://am.example.test:9093\n    bearer_token: {env: SINK_SIGNING}\n"
        "    generator_url: https://kpiwatch.example.test/rules",
        check_alertmanager,
        secrets=(SIGNING,),
    ),
}
CODED = [t for t, c in CASES.items() if c.codes is not None]


def make_sink(type_: str, client: httpx.AsyncClient) -> Sink:
    text = f"sinks:\n  - name: ops-{type_}\n    type: {type_}\n    {CASES[type_].yaml}\n"
    (config,) = load_text(text, "sinks.yaml", ENVIRON)
    return build(config, client)


@pytest.fixture(params=sorted(CASES))
def sink_type(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def sink_for(sink_type: str, mock_client: ClientFactory) -> Callable[[Handler], Sink]:
    return lambda handler: make_sink(sink_type, mock_client(handler))


async def failure(sink: Sink, alert: Alert) -> SinkError:
    with pytest.raises(SinkError) as caught:
        await sink.send([alert])
    return caught.value


def test_every_registered_type_is_covered() -> None:
    # Email is checked against a real SMTP server (test_email.py); console writes to a stream.
    assert set(SINK_TYPES) == set(CASES) | {"email", "console"}


async def test_payload_and_signature_are_the_platforms(
    sink_type: str, sink_for: Callable[[Handler], Sink], make_alert: AlertFactory
) -> None:
    seen: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={CASES[sink_type].keys[0]: 0, "msg": "ok"})

    await sink_for(receive).send([make_alert()])
    (request,) = seen
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    CASES[sink_type].check(request)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retryable(
    status: int, sink_for: Callable[[Handler], Sink], make_alert: AlertFactory
) -> None:
    error = await failure(sink_for(lambda r: httpx.Response(status)), make_alert())
    assert (error.retryable, str(error).endswith(f"HTTP {status}")) == (True, True)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413])
async def test_4xx_is_not_retryable(
    status: int, sink_for: Callable[[Handler], Sink], make_alert: AlertFactory
) -> None:
    error = await failure(sink_for(lambda r: httpx.Response(status)), make_alert())
    assert error.retryable is False


async def test_429_retries_after_the_time_asked(
    sink_for: Callable[[Handler], Sink], make_alert: AlertFactory
) -> None:
    sink = sink_for(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    error = await failure(sink, make_alert())
    assert (error.retryable, error.retry_after) == (True, 7.0)


async def test_transport_error_is_retryable(
    sink_for: Callable[[Handler], Sink], make_alert: AlertFactory
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    error = await failure(sink_for(refuse), make_alert())
    assert error.retryable is True
    assert str(error).endswith("request failed (ConnectError)")


@pytest.mark.parametrize("sink_type", CODED)
async def test_rate_limit_code_in_a_200_body_is_retryable(
    sink_type: str, mock_client: ClientFactory, make_alert: AlertFactory
) -> None:
    case = CASES[sink_type]
    assert case.codes is not None
    code, retry_after, _ = case.codes
    body = {case.keys[0]: code, case.keys[1]: "too fast"}
    sink = make_sink(sink_type, mock_client(lambda r: httpx.Response(200, json=body)))
    error = await failure(sink, make_alert())
    assert (error.retryable, error.retry_after) == (True, retry_after)
    assert f"{case.keys[0]} {code}: too fast" in str(error)


@pytest.mark.parametrize("sink_type", CODED)
@pytest.mark.parametrize("status", [200, 400])
async def test_other_codes_in_the_body_are_refusals(
    sink_type: str, status: int, mock_client: ClientFactory, make_alert: AlertFactory
) -> None:
    case = CASES[sink_type]
    assert case.codes is not None
    body = {case.keys[0]: case.codes[2], case.keys[1]: "refused"}
    sink = make_sink(sink_type, mock_client(lambda r: httpx.Response(status, json=body)))
    error = await failure(sink, make_alert())
    assert error.retryable is False


def scenarios(case: Case) -> list[Handler]:
    """Receivers that fail in every way, some echoing the secrets back."""
    echo = f"bad token TOKEN-SECRET-1 in {URL} signed with {SIGNING}"
    code_key, message_key = case.keys
    code = case.codes[0] if case.codes else 1

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    return [
        lambda r: httpx.Response(200, json={code_key: 0}),
        lambda r: httpx.Response(500, text=echo),
        lambda r: httpx.Response(429, headers={"Retry-After": "1"}),
        lambda r: httpx.Response(400, json={code_key: code, message_key: echo}),
        lambda r: httpx.Response(200, json={code_key: code, message_key: echo}),
        refuse,
    ]


async def test_no_secret_in_any_log_line_or_error(
    sink_type: str,
    mock_client: ClientFactory,
    make_alert: AlertFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    case = CASES[sink_type]
    texts: list[str] = []
    for handler in scenarios(case):
        try:
            await make_sink(sink_type, mock_client(handler)).send([make_alert()])
        except SinkError as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    texts += [record.getMessage() for record in caplog.records]
    assert any(r.name == "httpx" for r in caplog.records)  # the request log was really checked
    leaks = [t for t in texts for secret in case.secrets if secret in t]
    assert leaks == []


async def test_dingtalk_signs_a_fixed_vector(
    mock_client: ClientFactory, make_alert: AlertFactory
) -> None:
    # printf '1700000000000\nSECtest' | openssl dgst -sha256 -hmac 'SECtest' -binary | base64
    from rules.fileconfig import SecretSource
    from sinks.config import DingTalkConfig
    from sinks.dingtalk import DingTalkSink

    seen: list[httpx.Request] = []
    config = DingTalkConfig(
        name="d", type="dingtalk", url=SecretSource.of(URL), secret=SecretSource.of("SECtest")
    )
    client = mock_client(lambda r: seen.append(r) or httpx.Response(200, json={"errcode": 0}))
    await DingTalkSink(config, client, clock=lambda: 1_700_000_000.0).send([make_alert()])
    assert (
        seen[0]
        .url.query.decode()
        .endswith("timestamp=1700000000000&sign=aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D")
    )


async def test_feishu_signs_a_fixed_vector(
    mock_client: ClientFactory, make_alert: AlertFactory
) -> None:
    # printf '' | openssl dgst -sha256 -mac HMAC \
    #   -macopt hexkey:$(printf '1700000000\nSECtest' | od -An -tx1 | tr -d ' \n') -binary | base64
    from rules.fileconfig import SecretSource
    from sinks.config import FeishuConfig
    from sinks.feishu import FeishuSink

    seen: list[httpx.Request] = []
    config = FeishuConfig(
        name="f", type="feishu", url=SecretSource.of(URL), secret=SecretSource.of("SECtest")
    )
    client = mock_client(lambda r: seen.append(r) or httpx.Response(200, json={"code": 0}))
    await FeishuSink(config, client, clock=lambda: 1_700_000_000.9).send([make_alert()])
    body = body_of(seen[0])
    assert (body["timestamp"], body["sign"]) == (
        "1700000000",
        "G7XpBpG8NgG02fJOAhX6FRAObIljmFoxVReo8I62pEk=",
    )


def test_webhook_signs_a_fixed_vector() -> None:
    # printf '{"version":"1","alerts":[]}' | openssl dgst -sha256 -hmac 'whsecret'
    from sinks.webhook import signature

    assert signature("whsecret", b'{"version":"1","alerts":[]}') == (
        "sha256=5ca9ec3e635421404c066d2416a3d496957a57c086cb76bf3d9574e42548a1c1"
    )
