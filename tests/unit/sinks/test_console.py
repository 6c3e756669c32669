"""The console sink: one JSON line or one readable line per alert."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

from rules.alerts import Alert
from sinks.console import ConsoleSink, alert_json, alert_text

AlertFactory = Callable[..., Alert]


def test_alert_json_is_one_line_that_round_trips(make_alert: AlertFactory) -> None:
    alert = make_alert()
    line = alert_json(alert)
    assert "\n" not in line
    assert Alert.model_validate(json.loads(line)) == alert


def test_alert_text_is_time_then_summary(make_alert: AlertFactory) -> None:
    assert alert_text(make_alert("B")) == (
        "2026-11-23T18:00:00+00:00  [WARNING] acos-high: acos 40.00% > 35%; store=us-1 sku=B"
    )


async def test_console_sink_writes_json_lines(make_alert: AlertFactory) -> None:
    stream = io.StringIO()
    await ConsoleSink(stream=stream).send([make_alert("A"), make_alert("B")])
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["labels"]["sku"] for line in lines] == ["A", "B"]


async def test_console_sink_writes_text_lines(make_alert: AlertFactory) -> None:
    stream = io.StringIO()
    await ConsoleSink(stream=stream, json_lines=False).send([make_alert()])
    assert stream.getvalue() == alert_text(make_alert()) + "\n"


async def test_console_sink_defaults_to_stdout(
    capsys: pytest.CaptureFixture[str], make_alert: AlertFactory
) -> None:
    await ConsoleSink().send([make_alert()])
    assert capsys.readouterr().out == alert_json(make_alert()) + "\n"


async def test_console_sink_with_no_alerts_writes_nothing() -> None:
    stream = io.StringIO()
    await ConsoleSink(stream=stream).send([])
    assert stream.getvalue() == ""
