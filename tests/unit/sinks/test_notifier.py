"""Assembling the pipeline: sinks outside the file get everything at once; a route language
builds a variant of a sink that has a language."""

from __future__ import annotations

import httpx

from sinks.load import load_setup_text
from sinks.notifier import _Variants, full_route
from sinks.route import routes_for

TEXT = """\
sinks:
  - {name: ops, type: dingtalk, url: {env: DT}}
  - {name: hook, type: webhook, url: {env: DT}}
route:
  sinks: [ops]
  group_wait: 1m
  routes:
    - {match: {team: ads}, sinks: [hook]}
"""
ENV = {"DT": "https://oapi.dingtalk.com/robot/send?access_token=T"}


def test_console_and_shortcut_sinks_get_every_alert_at_once() -> None:
    setup = load_setup_text(TEXT, "sinks.yaml", ENV)
    route = full_route(setup, ["console", "ops", "hook"])
    handled = routes_for(route, {"team": "ops"})
    assert [(r.sinks, r.group_wait) for r in handled] == [(("ops",), 60.0), (("console",), 0.0)]
    assert [r.sinks for r in routes_for(route, {"team": "ads"})] == [("hook",), ("console",)]


def test_without_extras_the_file_route_is_used_as_is() -> None:
    setup = load_setup_text(TEXT, "sinks.yaml", ENV)
    assert full_route(setup, ["ops", "hook"]) is setup.route
    (only,) = routes_for(full_route(None, ["console"]), {})
    assert (only.sinks, only.group_wait) == (("console",), 0.0)


async def test_language_variants_only_for_sinks_with_a_language() -> None:
    setup = load_setup_text(TEXT, "sinks.yaml", ENV)
    async with httpx.AsyncClient() as client:
        variants = _Variants(setup, client)
        english = variants("ops", "en")
        assert english is not None
        assert english._config.language == "en"  # type: ignore[attr-defined]
        assert variants("hook", "en") is None
        assert setup.sinks[0].language == "zh"  # type: ignore[attr-defined]
