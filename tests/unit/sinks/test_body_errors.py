"""Errors that come back inside a 2xx body are failures: Teams (Workflows and legacy
connectors) and Slack, as DingTalk, Feishu and WeCom already are (test_conformance.py)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from rules.alerts import Alert
from sinks.base import Sink, SinkError
from sinks.load import load_text
from sinks.registry import build
from sinks.teams import body_error

URL = "https://prod-01.westeurope.logic.azure.com/workflows/abcdef0123456789abcdef/triggers/manual/paths/invoke?sig=SIGSECRET123"
ClientFactory = Callable[[Callable[[httpx.Request], httpx.Response]], httpx.AsyncClient]


def sink(type_: str, client: httpx.AsyncClient) -> Sink:
    text = f"sinks:\n  - {{name: t, type: {type_}, url: {{env: U}}}}\n"
    (config,) = load_text(text, "sinks.yaml", {"U": URL})
    return build(config, client)


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (200, '{"error": {"code": "TriggerInputSchemaMismatch", "message": "bad"}}', False),
        (200, "Microsoft Teams endpoint returned HTTP error 429 with ContextId x", True),
        (200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
              "HTTP error 413", False),
        (202, '{"error": {"code": "WorkflowTriggerIsNotEnabled", "message": "off"}}', False),
    ],
)  # fmt: skip
async def test_teams_errors_in_a_2xx_body_fail(
    mock_client: ClientFactory,
    make_alert: Callable[..., Alert],
    status: int,
    body: str,
    retryable: bool,
) -> None:
    teams = sink("teams", mock_client(lambda _: httpx.Response(status, text=body)))
    with pytest.raises(SinkError) as caught:
        await teams.send([make_alert()])
    assert caught.value.retryable is retryable
    assert "error in a 2xx answer" in str(caught.value)
    assert "SIGSECRET123" not in str(caught.value)


@pytest.mark.parametrize("answer", ["", "1", '{"status": "ok"}'])
def test_teams_success_bodies_are_not_errors(answer: str) -> None:
    assert body_error(answer) is None


async def test_teams_202_with_an_empty_body_is_delivered(
    mock_client: ClientFactory, make_alert: Callable[..., Alert]
) -> None:
    await sink("teams", mock_client(lambda _: httpx.Response(202))).send([make_alert()])


async def test_slack_error_token_in_a_200_body_fails(
    mock_client: ClientFactory, make_alert: Callable[..., Alert]
) -> None:
    slack = sink("slack", mock_client(lambda _: httpx.Response(200, text="invalid_blocks")))
    with pytest.raises(SinkError, match="invalid_blocks") as caught:
        await slack.send([make_alert()])
    assert caught.value.retryable is False
    ok = sink("slack", mock_client(lambda _: httpx.Response(200, text="ok")))
    await ok.send([make_alert()])
