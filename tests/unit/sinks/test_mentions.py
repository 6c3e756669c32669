"""Mentions per route: inherited down the tree, applied per platform, and found again by a
dead-letter's lane name (`kpiwatch alerts resend`)."""

from __future__ import annotations

import httpx
import pytest

from rules.errors import ConfigError
from sinks.config import DingTalkConfig, Mention, WeComConfig
from sinks.dispatch import lane_name_of
from sinks.load import load_setup_text
from sinks.notifier import lane_sink
from sinks.registry import build
from sinks.route import find_route, routes_for

TEXT = """\
sinks:
  - {name: ding, type: dingtalk, url: {env: U}, mention_mobiles: ['100']}
  - {name: wecom, type: wecom, url: {env: U}, mention_user_ids: [w0]}
route:
  sinks: [ding, wecom]
  routes:
    - match: {team: ops}
      mention: {mobiles: ['200'], user_ids: [u-ops]}
      routes:
        - {match: {store: jp-1}, language: en}
        - {match: {store: jp-2}, mention: {user_ids: [u-jp2], all: true}}
"""
ENV = {"U": "https://robot.example.test/send?access_token=T"}


def test_a_child_route_inherits_or_replaces_the_mention() -> None:
    setup = load_setup_text(TEXT, "sinks.yaml", ENV)
    (jp1,) = routes_for(setup.route, {"team": "ops", "store": "jp-1"})
    (jp2,) = routes_for(setup.route, {"team": "ops", "store": "jp-2"})
    (other,) = routes_for(setup.route, {"team": "ads"})
    assert jp1.mention == Mention(mobiles=("200",), user_ids=("u-ops",))
    assert jp2.mention == Mention(user_ids=("u-jp2",), all=True)
    assert other.mention is None
    assert find_route(setup.route, jp2.id) is jp2


def test_each_platform_takes_what_it_supports() -> None:
    setup = load_setup_text(TEXT, "sinks.yaml", ENV)
    ding, wecom = setup.sinks
    mention = Mention(mobiles=("200",), user_ids=("u1",), all=True)
    assert isinstance(ding, DingTalkConfig)
    mentioned = ding.mentioning(mention)
    assert isinstance(mentioned, DingTalkConfig)
    assert (mentioned.mention_mobiles, mentioned.mention_user_ids, mentioned.mention_all) == (
        ["200"], ["u1"], True,
    )  # fmt: skip
    assert ding.mention_mobiles == ["100"]  # the sink's own stays for other routes
    assert isinstance(wecom, WeComConfig)
    markdown = wecom.mentioning(mention)
    assert isinstance(markdown, WeComConfig)
    # WeCom markdown can only @ by user id.
    assert (markdown.mention_user_ids, markdown.mention_mobiles, markdown.mention_all) == (
        ["u1"], [], False,
    )  # fmt: skip


async def test_a_dead_letter_lane_name_finds_the_routes_mentions() -> None:
    setup = load_setup_text(TEXT, "sinks.yaml", ENV)
    (jp2,) = routes_for(setup.route, {"team": "ops", "store": "jp-2"})
    async with httpx.AsyncClient() as client:
        sinks = [build(config, client) for config in setup.sinks]
        find = lane_sink(sinks, setup, client)
        found = find(lane_name_of("ding", None, jp2.id))
        assert lane_name_of("ding", None, jp2.id).partition("/")[0] == "ding"
        assert found is not None
        assert found._config.mention_user_ids == ["u-jp2"]  # type: ignore[attr-defined]
        plain = find("ding")
        assert plain is sinks[0]


def test_a_mention_with_an_unknown_key_is_refused() -> None:
    bad = TEXT.replace("all: true", "everyone: true")
    with pytest.raises(ConfigError, match="everyone"):
        load_setup_text(bad, "sinks.yaml", ENV)
