"""Alerts a person can act on, checked in the exact body each platform receives: the rule's own
words in the route's language, the route's mentions (one robot, a different person per store),
the window in the marketplace's zone, money in the selling and the reporting currency, and the
Grafana and signed silence links."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from rules.alerts import Alert, fingerprint
from sinks.dispatch import NullObserver
from sinks.links import verify
from sinks.load import load_setup_text
from sinks.notifier import build_dispatcher
from sinks.registry import build
from sinks.render import render

KEY = "link-signing-key-for-tests"
ENV = {
    "DING": "https://ding.example.test/robot/send?access_token=T1",
    "LARK": "https://lark.example.test/open-apis/bot/v2/hook/T2",
    "WECOM": "https://wecom.example.test/cgi-bin/webhook/send?key=T3",
    "SLACK": "https://slack.example.test/services/T4",
    "TEAMS": "https://teams.example.test/workflows/T5/triggers/manual/paths/invoke",
    "LINK_KEY": KEY,
}
SINKS = """\
sinks:
  - {name: ding, type: dingtalk, url: {env: DING}, mention_mobiles: ['13800000000']}
  - {name: lark, type: feishu, url: {env: LARK}}
  - {name: wecom, type: wecom, url: {env: WECOM}}
  - {name: slack, type: slack, url: {env: SLACK}}
  - {name: teams, type: teams, url: {env: TEAMS}}
  - {name: am, type: alertmanager, url: 'http://am.example.test:9093'}
route:
  sinks: [ding, lark, wecom, slack, teams, am]
  group_wait: 0s
  group_by: [rule, store]
  routes:
    - match: {store: jp-1}
      language: zh
      mention: {mobiles: ['13811112222'], user_ids: [u-jp1]}
    - match: {store: jp-2}
      language: en
      mention: {user_ids: [u-jp2@example.test]}
links:
  grafana: {url: 'https://grafana.example.test'}
  silence: {url: 'https://kpiwatch.example.test', key: {env: LINK_KEY}, lifetime: 1d}
"""
TEMPLATES = {
    "jp-1": {"zh": "店铺 jp-1 今日 GMV 过低", "en": "Store jp-1 GMV is low today"},
    "jp-2": {"zh": "店铺 jp-2 今日 GMV 过低", "en": "Store jp-2 GMV is low today"},
}
MONEY = "¥1,980 / $12.87"


def gmv_alert(store: str, *, zoned: bool = True) -> Alert:
    labels = {"platform": "amazon", "marketplace": "JP", "store": store}
    record: dict[str, Any] = {
        "rule": "gmv-low",
        "severity": "warning",
        "status": "firing",
        "labels": labels,
        "value": Decimal("12.87"),
        "threshold": "< 20 USD",
        # As the alerts topic carries them: UTC offsets; the zone says where they are local.
        "window_start": datetime.fromisoformat("2026-11-29T15:00:00+00:00"),
        "window_end": datetime.fromisoformat("2026-11-30T15:00:00+00:00"),
        "at": datetime.fromisoformat("2026-11-30T05:05:00+00:00"),
        "kpi": "gmv",
        "fingerprint": fingerprint("gmv-low", labels),
        "summary": f"[WARNING] gmv-low: gmv 12.87 USD < 20 USD; store={store}",
        "messages": TEMPLATES[store],
    }
    if zoned:
        record |= {
            "zone": "Asia/Tokyo",
            "selling": {"amount": "1980", "currency": "JPY"},
            "reporting": {"amount": "12.8700", "currency": "USD"},
        }
    return Alert.model_validate(record)


@pytest.fixture
async def received() -> dict[str, list[Any]]:
    """Every platform's request bodies, by host, after both stores' alerts went through."""
    bodies: dict[str, list[Any]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        bodies.setdefault(host, []).append(json.loads(request.content))
        if host == "teams":
            return httpx.Response(202)
        return httpx.Response(200, json={"errcode": 0, "code": 0})

    setup = load_setup_text(SINKS, "sinks.yaml", ENV)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sinks = [build(config, client) for config in setup.sinks]
        dispatcher, _ = build_dispatcher(
            sinks, setup, redis=None, namespace="t:", dead_letter=_fail,
            observer=NullObserver(), client=client,
        )  # fmt: skip
        dispatcher.start()
        for store in ("jp-1", "jp-2"):
            await dispatcher.submit(gmv_alert(store))
        deadline = time.monotonic() + 5
        while dispatcher.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await dispatcher.close()
    return bodies


async def _fail(lane: str, alerts: Any, reason: str) -> None:
    raise AssertionError(f"{lane}: {reason}")


def by_store(bodies: list[Any], text_of: Any) -> dict[str, Any]:
    found = {store: b for b in bodies for store in TEMPLATES if store in text_of(b)}
    assert set(found) == set(TEMPLATES), bodies
    return found


def check_facts(text: str) -> None:
    assert MONEY in text
    assert "11-30 JST" in text  # the JST day, not the UTC dates it spans
    assert "2026-11-30 14:05:00 JST" in text
    assert "https://grafana.example.test/d/kpiwatch/kpiwatch?orgId=1&viewPanel=23" in text
    assert "https://kpiwatch.example.test/silence-link?a=silence&fp=" in text


def test_dingtalk(received: dict[str, list[Any]]) -> None:
    bodies = by_store(received["ding"], lambda b: b["markdown"]["text"])
    zh, en = bodies["jp-1"], bodies["jp-2"]
    assert zh["markdown"]["title"] == "【警告】店铺 jp-1 今日 GMV 过低"
    assert en["markdown"]["title"] == "[WARNING] Store jp-2 GMV is low today"
    check_facts(zh["markdown"]["text"])
    assert "[静默 2 小时](https://kpiwatch.example.test/silence-link?" in zh["markdown"]["text"]
    assert "[Silence 2 h](https://kpiwatch.example.test/silence-link?" in en["markdown"]["text"]
    # The route's people, not the sink's 13800000000; in `at` and written in the text.
    assert zh["at"] == {"atMobiles": ["13811112222"], "atUserIds": ["u-jp1"], "isAtAll": False}
    assert zh["markdown"]["text"].endswith("@13811112222 @u-jp1")
    assert en["at"] == {
        "atMobiles": [], "atUserIds": ["u-jp2@example.test"], "isAtAll": False,
    }  # fmt: skip
    assert en["markdown"]["text"].endswith("@u-jp2@example.test")


def test_feishu(received: dict[str, list[Any]]) -> None:
    bodies = by_store(received["lark"], lambda b: b["card"]["header"]["title"]["content"])
    zh, en = bodies["jp-1"], bodies["jp-2"]
    assert zh["card"]["header"]["title"]["content"] == "【警告】店铺 jp-1 今日 GMV 过低"
    assert en["card"]["header"]["title"]["content"] == "[WARNING] Store jp-2 GMV is low today"
    content = zh["card"]["elements"][0]["text"]["content"]
    check_facts(content)
    assert content.endswith("<at id=u-jp1></at>")
    assert en["card"]["elements"][0]["text"]["content"].endswith("<at id=u-jp2@example.test></at>")


def test_wecom(received: dict[str, list[Any]]) -> None:
    bodies = by_store(received["wecom"], lambda b: b["markdown"]["content"])
    content = bodies["jp-1"]["markdown"]["content"]
    assert content.startswith("### 【警告】店铺 jp-1 今日 GMV 过低")
    check_facts(content)
    assert content.endswith("<@u-jp1>")
    assert bodies["jp-2"]["markdown"]["content"].endswith("<@u-jp2@example.test>")


def test_slack(received: dict[str, list[Any]]) -> None:
    bodies = by_store(received["slack"], lambda b: b["text"])
    zh, en = bodies["jp-1"], bodies["jp-2"]
    assert en["text"] == "[WARNING] Store jp-2 GMV is low today"
    section = en["blocks"][1]["text"]["text"]
    assert section.startswith("*[WARNING] Store jp-2 GMV is low today*")
    assert MONEY in section
    assert "11-30 JST" in section
    assert "<https://grafana.example.test/d/kpiwatch/kpiwatch?" in section
    assert "|Silence 2 h>" in section
    who = {"type": "mrkdwn", "text": "<@u-jp2@example.test>"}
    assert en["blocks"][-1] == {"type": "section", "text": who}
    assert zh["blocks"][-1]["text"]["text"] == "<@u-jp1>"


def test_teams(received: dict[str, list[Any]]) -> None:
    cards = by_store(received["teams"], lambda b: json.dumps(b, ensure_ascii=False))
    card = cards["jp-2"]["attachments"][0]["content"]
    title, _headline, facts, actions, mention = card["body"]
    assert title["text"] == "[WARNING] Store jp-2 GMV is low today"
    values = {f["title"]: f["value"] for f in facts["facts"]}
    assert values["Value"] == f"gmv {MONEY}"
    assert values["Window"] == "11-30 JST"
    assert values["Time"] == "2026-11-30 14:05:00 JST"
    assert [a["title"] for a in actions["actions"]] == ["Grafana", "Silence 2 h", "Acknowledge"]
    assert all(a["type"] == "Action.OpenUrl" for a in actions["actions"])
    # The route's person: an <at> placeholder and its entity (a UPN).
    assert mention == {"type": "TextBlock", "text": "<at>u-jp2@example.test</at>", "wrap": True}
    assert card["msteams"]["entities"] == [
        {
            "type": "mention",
            "text": "<at>u-jp2@example.test</at>",
            "mentioned": {"id": "u-jp2@example.test", "name": "u-jp2@example.test"},
        }
    ]


def test_alertmanager(received: dict[str, list[Any]]) -> None:
    posted = [alert for body in received["am"] for alert in body]
    alert = next(a for a in posted if a["labels"]["store"] == "jp-2")
    assert alert["annotations"]["summary"] == "Store jp-2 GMV is low today"
    assert MONEY in alert["annotations"]["description"]
    assert "11-30 JST" in alert["annotations"]["description"]
    assert alert["annotations"]["dashboard"].startswith("https://grafana.example.test/d/kpiwatch/")


def test_the_silence_link_in_a_message_verifies() -> None:
    setup = load_setup_text(SINKS, "sinks.yaml", ENV)
    from sinks.notifier import links_of

    links = links_of(setup)
    assert links is not None
    alert = gmv_alert("jp-1")
    url = links.action(alert, "silence")
    assert url is not None
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    action = verify(SecretStr(KEY), query, time.time())
    assert (action.action, action.fingerprint, action.seconds) == (
        "silence",
        alert.fingerprint,
        7200,
    )
    assert action.expires - time.time() == pytest.approx(86400, abs=5)


def test_an_old_record_without_zone_or_currencies_still_renders() -> None:
    old = gmv_alert("jp-2", zoned=False)
    text = render([old], "en").text()
    assert "Store jp-2 GMV is low today" in text
    assert "gmv 12.87 USD" in text
    assert "2026-11-29 15:00 → 2026-11-30 15:00 UTC" in text


def test_without_a_template_the_usual_words_stay() -> None:
    plain = gmv_alert("jp-1").model_copy(update={"messages": {}})
    assert render([plain], "en").title == f"[WARNING] gmv-low: gmv {MONEY}"
    assert render([plain], "zh").items[0].headline == "【警告】gmv-low"
