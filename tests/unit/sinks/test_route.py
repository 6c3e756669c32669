"""The routing tree: first match wins unless `continue`, the root is the fallback, settings
are inherited once at load time."""

from __future__ import annotations

from pathlib import Path

from sinks.load import load_setup_path, load_setup_text
from sinks.route import Route, routes_for

SINKS = "".join(
    f"  - name: {name}\n    type: console\n" for name in ("ops", "ads", "jp", "pager", "all")
)
TREE = """\
route:
  sinks: [ops]
  group_by: [rule, store]
  group_wait: 10s
  language: zh
  routes:
    - match: {severity: critical}
      sinks: [pager]
      continue: true
      language: en
    - match: {team: ads}
      match_re: {store: "jp-.*"}
      sinks: [jp]
      group_interval: 2m
    - match: {team: ads}
      sinks: [ads]
      routes:
        - match: {marketplace: US}
          group_by: [rule]
"""


def tree() -> Route:
    return load_setup_text("sinks:\n" + SINKS + TREE, "sinks.yaml", {}).route


def handled(labels: dict[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    return [(r.id, r.sinks) for r in routes_for(tree(), labels)]


def test_unmatched_alert_falls_back_to_the_root() -> None:
    assert handled({"team": "ops", "severity": "warning"}) == [("0", ("ops",))]


def test_first_matching_sibling_wins() -> None:
    labels = {"team": "ads", "store": "jp-1", "severity": "warning"}
    assert handled(labels) == [("0.1", ("jp",))]
    assert handled({**labels, "store": "us-1"}) == [("0.2", ("ads",))]


def test_continue_lets_later_siblings_match_too() -> None:
    labels = {"team": "ads", "store": "jp-1", "severity": "critical"}
    assert handled(labels) == [("0.0", ("pager",)), ("0.1", ("jp",))]


def test_a_parent_handles_what_none_of_its_children_match() -> None:
    labels = {"team": "ads", "store": "de-1", "marketplace": "DE", "severity": "warning"}
    assert handled(labels) == [("0.2", ("ads",))]


def test_regex_matches_the_whole_value() -> None:
    labels = {"team": "ads", "store": "xjp-1", "severity": "warning"}
    assert handled(labels) == [("0.2", ("ads",))]


def test_settings_are_inherited_and_overridden() -> None:
    root = tree()
    pager, jp, ads = root.routes
    (us,) = ads.routes
    assert (pager.language, jp.language) == ("en", "zh")
    assert (jp.group_wait, jp.group_interval) == (10.0, 120.0)
    assert ads.group_by == ("rule", "store")
    assert (us.group_by, us.sinks) == (("rule",), ("ads",))


def test_without_a_route_every_alert_goes_to_every_sink() -> None:
    setup = load_setup_text("sinks:\n" + SINKS, "sinks.yaml", {})
    (route,) = routes_for(setup.route, {"store": "x"})
    assert route.sinks == ("ops", "ads", "jp", "pager", "all")
    assert setup.delivery.attempts == 5


def test_the_example_sinks_file_loads() -> None:
    example = Path(__file__).parents[3] / "deploy" / "kpiwatch" / "sinks.example.yaml"
    names = ("OPS_DINGTALK_URL", "OPS_DINGTALK_SECRET", "ADS_FEISHU_URL", "ADS_FEISHU_SECRET")
    setup = load_setup_path(example, dict.fromkeys(names, "https://example.test/x"))
    labels = {"team": "ads", "store": "jp-3", "severity": "critical"}
    assert [(r.sinks, r.language) for r in routes_for(setup.route, labels)] == [
        (("sre-alertmanager",), "zh"),
        (("ads-feishu",), "en"),
    ]
