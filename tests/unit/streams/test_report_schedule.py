"""Report schedules in the sinks file: checked at load with file:line, due times in the
schedule's own zone (daylight saving included), and the catch-up window."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import httpx
import pytest

from rules.errors import ConfigError
from sinks.base import SinkError
from sinks.config import EmailConfig
from sinks.load import load_setup_text
from sinks.ratelimit import MemoryLimiter
from streams.reports.deliver import Rendered, report_sink, send_report
from streams.reports.schedule import latest_due, report_day

HEAD = "sinks:\n  - {name: ops, type: console}\nschedules:\n"


def schedule(line: str) -> str:
    return HEAD + line


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_setup_text(text, "sinks.yaml", {})
    return [str(p) for p in caught.value.problems]


def test_a_bad_cron_zone_or_sink_is_named_at_its_line() -> None:
    text = (
        HEAD
        + "  - {name: a, team: ops, cron: '61 9 * * *'}\n"
        + "  - {name: b, team: ops, cron: '0 9 * * *', timezone: Mars/Base}\n"
    )
    found = problems(text)
    assert any(p.startswith("sinks.yaml:4:") and "'61 9 * * *' is not a cron" in p for p in found)
    assert any(
        p.startswith("sinks.yaml:5:") and "'Mars/Base' is not a time zone" in p for p in found
    )
    found = problems(schedule("  - {name: c, team: ops, cron: '0 9 * * *', sinks: [nope]}\n"))
    assert found == ["sinks.yaml:4: schedules: c: no sink named 'nope' (known: ops)"]


def test_a_valid_schedule_loads() -> None:
    setup = load_setup_text(
        schedule("  - {name: daily, team: ops, cron: '0 9 * * *', timezone: Asia/Tokyo}\n"),
        "sinks.yaml",
        {},
    )
    assert [s.name for s in setup.schedules] == ["daily"]
    assert setup.schedules[0].period == "day"


def test_due_times_are_in_the_schedules_zone_across_daylight_saving() -> None:
    setup = load_setup_text(
        schedule(
            "  - {name: ny, team: ops, cron: '0 9 * * *', timezone: America/New_York}\n"
            "  - {name: weekly, team: ops, cron: '30 8 * * 1', timezone: Asia/Shanghai,"
            " period: week, catch_up: 1d}\n"
        ),
        "sinks.yaml",
        {},
    )
    ny, weekly = setup.schedules
    # 09:00 in New York is 13:00 UTC in summer time, 14:00 UTC after 2026-11-01.
    assert latest_due(ny, datetime(2026, 10, 30, 13, 0, 30, tzinfo=UTC)) is not None
    assert latest_due(ny, datetime(2026, 11, 2, 13, 0, 30, tzinfo=UTC)) is None  # 1 h catch-up
    due = latest_due(ny, datetime(2026, 11, 2, 14, 0, 0, tzinfo=UTC))
    assert due is not None
    assert due.isoformat() == "2026-11-02T09:00:00-05:00"
    assert report_day(ny, due) == date(2026, 11, 1)
    # Monday 08:30 in Shanghai, caught up the same day.
    due = latest_due(weekly, datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    assert due is not None
    assert due.isoformat() == "2026-11-30T08:30:00+08:00"
    assert report_day(weekly, due) == date(2026, 11, 29)


def rendered() -> Rendered:
    html = "<html><img src='cid:gmv'></html>"
    return Rendered(
        "ops: day report, 2026-11-29", "# ops\n\n| KPI | value |", html, {"gmv": b"PNG"}
    )


async def test_a_robot_gets_the_report_as_its_own_signed_markdown() -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    setup = load_setup_text(
        "sinks:\n  - {name: dt, type: dingtalk, url: {env: U}, secret: {env: S}}\n",
        "sinks.yaml",
        {"U": "https://oapi.dingtalk.com/robot/send?access_token=T", "S": "SEC"},
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        sink = report_sink(setup.sinks[0], rendered(), client)
        failure = await send_report(
            sink, delivery=setup.delivery, limit=None, limiter=MemoryLimiter()
        )
    assert failure is None
    body = json.loads(sent[0].content)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "ops: day report, 2026-11-29"
    assert body["markdown"]["text"].startswith("# ops\n\n| KPI | value |")
    assert "sign=" in str(sent[0].url)


def test_email_gets_html_with_the_charts_as_inline_parts() -> None:
    config = EmailConfig(type="email", name="mail", host="smtp.example", sender="k@example.com",
                         to=["ops@example.com"])  # fmt: skip
    message = report_sink(config, rendered(), httpx.AsyncClient()).message([])  # type: ignore[attr-defined]
    assert message["Subject"] == "ops: day report, 2026-11-29"
    types = [part.get_content_type() for part in message.walk()]
    assert types == ["multipart/alternative", "text/plain", "multipart/related", "text/html",
                     "image/png"]  # fmt: skip
    image = next(p for p in message.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<gmv>"


def test_webhooks_do_not_take_reports() -> None:
    setup = load_setup_text(
        "sinks:\n  - {name: hook, type: webhook, url: {env: U}}\n", "s.yaml", {"U": "http://x/"}
    )
    with pytest.raises(SinkError, match="a webhook sink does not take reports"):
        report_sink(setup.sinks[0], rendered(), httpx.AsyncClient())
