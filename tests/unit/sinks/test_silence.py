"""Silence matchers and validation, as the CLI and the HTTP API build them (the Redis store is
tested against a real Redis in tests/integration/test_sinks_silences.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from sinks.silence import Matcher, SilenceStore, main, new_silence, silence_from_json

from .conftest import _alert

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LABELS = {"store": "us-1", "sku": "A-7", "team": "ads"}


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("store=us-1", True),
        ("store=us-2", False),
        ("store!=us-2", True),
        ("sku=~A-.*", True),
        ("sku=~A", False),  # the whole value must match, as in Alertmanager
        ("sku!~B-.*", True),
        ("missing=", True),  # an absent label is the empty string
    ],
)
def test_matchers(text: str, hit: bool) -> None:
    matcher = Matcher.parse(text)
    assert matcher.matches(LABELS) is hit
    assert str(matcher) == text


def test_a_silence_is_active_between_its_start_and_end() -> None:
    silence = new_silence(["store=us-1", "team=ads"], 3600, "lin", "stocktake", now=NOW)
    assert silence.matches(LABELS)
    assert silence.active(NOW)
    assert not silence.active(NOW + timedelta(hours=1))
    assert not silence.matches({**LABELS, "team": "ops"})


@pytest.mark.parametrize(
    ("matchers", "message"),
    [
        (["store"], "'store' is not a matcher (name=value, !=, =~ or !~)"),
        (["sku=~("], "is not a regular expression"),
        ([], "matchers: List should have at least 1 item"),
    ],
)
def test_bad_silences_say_what_is_wrong(matchers: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        new_silence(matchers, 60, "lin", now=NOW)
    assert message in str(caught.value)


def test_the_http_body_takes_a_duration_and_alertmanager_matchers() -> None:
    body = {
        "matchers": [{"name": "sku", "value": "A-.*", "isRegex": True}],
        "duration": "30m",
        "created_by": "sre",
        "id": "someone-elses",
    }
    silence = silence_from_json(body, now=NOW)
    assert silence.ends_at == NOW + timedelta(minutes=30)
    assert silence.id != "someone-elses"
    assert silence.matches(LABELS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"matchers": [{"name": "a", "value": "b"}], "created_by": "x"}, "ends_at: Field required"),
        ({"matchers": [], "duration": "1h", "created_by": "x"}, "matchers: List should have"),
        ({"matchers": [{"name": "a", "value": "b"}], "duration": "soon"}, "not a duration"),
    ],
)
def test_bad_http_bodies(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        silence_from_json(body, now=NOW)
    assert message in str(caught.value)


def test_the_cli_needs_a_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--redis-url", "", "list"]) == 2
    assert "KPIWATCH_REDIS_URL" in capsys.readouterr().err


async def test_without_redis_the_last_silences_read_still_apply() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    store = SilenceStore(redis, refresh=0)
    store._cache = (0.0, [new_silence(["sku=A"], 3600, "lin")])
    alert = _alert(sku="A")
    try:
        assert await store.muted(alert, alert.labels)
        other = _alert(sku="B")
        assert not await store.muted(other, other.labels)
    finally:
        await redis.aclose()
