"""Rendering: the same words for every sink, in zh and en, cut to a platform's size limit."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from rules.alerts import Alert
from sinks.render import Message, fit, render

AlertFactory = Callable[..., Alert]


def test_one_alert_in_english(make_alert: AlertFactory) -> None:
    message = render([make_alert()], "en")
    assert message.title == "[WARNING] acos-high: acos 40.00%"
    assert message.text().splitlines()[2:] == [
        "[WARNING] acos-high",
        "  Value: acos 40.00%",
        "  Threshold: > 35%",
        "  Scope: platform amazon · marketplace US · store us-1 · SKU A",
        "  Window: 2026-11-23 08:00 → 2026-11-24 08:00 UTC",
        "  Time: 2026-11-23 18:00:00 UTC",
    ]


def test_a_group_in_chinese(make_alert: AlertFactory) -> None:
    message = render([make_alert("A"), make_alert("B")], "zh")
    assert message.title == "【警告】acos-high：2 条告警"  # noqa: RUF001
    assert "- 范围: 平台 amazon · 站点 US · 店铺 us-1 · SKU B" in message.markdown()


def test_resolved_only_when_every_alert_is(make_alert: AlertFactory) -> None:
    assert render([make_alert(status="resolved")], "en").level == "resolved"
    mixed = [make_alert("A", status="resolved"), make_alert("B")]
    assert render(mixed, "en").level == "warning"


def test_money_value_takes_the_thresholds_currency(make_alert: AlertFactory) -> None:
    alert = make_alert().model_copy(
        update={"kpi": "ad_spend", "value": Decimal("1234.5"), "threshold": ">= 1000 USD"}
    )
    assert render([alert], "en").title.endswith("ad_spend 1,234.50 USD")


def test_undefined_value(make_alert: AlertFactory) -> None:
    alert = make_alert().model_copy(update={"value": None})
    assert render([alert], "en").title.endswith("acos undefined")


def test_html_escapes(make_alert: AlertFactory) -> None:
    assert "<td>&gt; 35%</td>" in render([make_alert()], "en").html()


def test_fit_drops_items_and_says_how_many(make_alert: AlertFactory) -> None:
    message = render([make_alert(str(i)) for i in range(40)], "en")
    text = fit(message, Message.markdown, 2000)
    assert len(text.encode()) <= 2000
    kept = text.count("**[WARNING] acos-high**")
    assert 0 < kept < 40
    assert text.endswith(f"... and {40 - kept} more")


def test_nothing_to_render() -> None:
    with pytest.raises(ValueError, match="no alerts"):
        render([], "en")
