"""Loading good rule files: shipped defaults, folders, compiled defaults, the (kpi, scope) index."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from rules.errors import ConfigError
from rules.kpis import SKU, STORE
from rules.load import CompiledRule, RuleSet, load_default, load_paths, load_text

ACOS_RULE = """\
rules:
  - name: {name}
    kpi: acos
    by: [store, sku]
    thresholds:
      warning: "> 35%"
"""

GMV_RULE = """\
rules:
  - name: sales-low
    kpi: gmv
    thresholds:
      warning: "< 100 USD"
"""


def one(text: str) -> CompiledRule:
    (rule,) = load_text(text, "rules.yaml")
    return rule


def test_default_rules_load_with_their_names() -> None:
    rules = load_default()
    assert [rule.name for rule in rules.rules] == ["stockout", "acos-high", "acos-high-jp"]
    assert len(rules) == 3


def test_default_rules_name_their_packaged_file_and_line() -> None:
    stockout = load_default().rules[0]
    assert stockout.source == "<kpiwatch>/rules/library/default.yaml:7"


def test_default_acos_rule_is_compiled_with_guard_filters_and_labels() -> None:
    acos = {rule.name: rule for rule in load_default().rules}["acos-high"]
    assert acos.kpi.name == "acos"
    assert acos.level == SKU
    assert acos.window == "1d"
    assert [(s, str(t)) for s, t in acos.thresholds] == [
        ("critical", "> 60%"),
        ("warning", "> 35%"),
    ]
    assert [str(g) for g in acos.guards] == ["ad_spend >= 20 USD"]
    assert acos.filters == (("marketplace", frozenset({"US", "CA", "MX"})),)
    assert acos.labels == (("team", "advertising"),)


def test_thresholds_are_ordered_critical_first_whatever_the_file_order() -> None:
    rule = one(
        'rules:\n  - name: r\n    kpi: acos\n    thresholds:\n      warning: "> 35%"\n'
        '      critical: "> 60%"\n'
    )
    assert [severity for severity, _ in rule.thresholds] == ["critical", "warning"]


def test_windowed_kpi_gets_the_day_window_by_default() -> None:
    assert one(GMV_RULE).window == "1d"


def test_latest_value_kpi_gets_no_window() -> None:
    rule = one(
        "rules:\n  - name: s\n    kpi: available\n    by: [store, sku]\n    thresholds:\n"
        '      critical: "< 1"\n'
    )
    assert rule.window is None


def test_platform_and_marketplace_in_by_do_not_change_the_scope_level() -> None:
    text = ACOS_RULE.format(name="a").replace("[store, sku]", "[platform, marketplace, store, sku]")
    assert one(text).level == SKU


def test_store_is_the_default_scope() -> None:
    assert one(GMV_RULE).level == STORE


def test_money_threshold_keeps_number_and_currency() -> None:
    ((_, threshold),) = one(GMV_RULE).thresholds
    assert (threshold.value, threshold.unit) == (Decimal("100"), "USD")


def test_a_folder_of_files_loads_yaml_and_yml_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(ACOS_RULE.format(name="acos-b"), "utf-8")
    (tmp_path / "a.yml").write_text(ACOS_RULE.format(name="acos-a"), "utf-8")
    (tmp_path / "notes.txt").write_text("not rules", "utf-8")
    rules = load_paths([tmp_path])
    assert sorted(rule.name for rule in rules.rules) == ["acos-a", "acos-b"]
    assert {Path(rule.file).name for rule in rules.rules} == {"a.yml", "b.yaml"}


def test_files_and_folders_can_be_mixed(tmp_path: Path) -> None:
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "acos.yaml").write_text(ACOS_RULE.format(name="acos"), "utf-8")
    single = tmp_path / "gmv.yaml"
    single.write_text(GMV_RULE, "utf-8")
    rules = load_paths([folder, single])
    assert [rule.name for rule in rules.rules] == ["acos", "sales-low"]


def test_the_same_name_in_two_files_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ACOS_RULE.format(name="acos"), "utf-8")
    (tmp_path / "b.yaml").write_text(ACOS_RULE.format(name="acos"), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_paths([tmp_path])
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert [str(p) for p in caught.value.problems] == [
        f"{second}:2: rule name 'acos' is already used at {first}:2"
    ]


def test_matching_returns_only_rules_of_that_kpi_and_level() -> None:
    rules = load_default()
    assert [r.name for r in rules.matching(["acos"], SKU)] == ["acos-high", "acos-high-jp"]
    assert [r.name for r in rules.matching(["available"], SKU)] == ["stockout"]


def test_matching_the_wrong_level_finds_nothing() -> None:
    rules = load_default()
    assert rules.matching(["acos"], STORE) == []
    assert rules.matching(["available"], STORE) == []


def test_matching_a_kpi_without_rules_finds_nothing() -> None:
    assert load_default().matching(["gmv", "clicks"], SKU) == []


def test_matching_several_kpis_collects_their_rules() -> None:
    rules = load_default()
    names = [r.name for r in rules.matching(["ad_spend", "acos", "available"], SKU)]
    assert names == ["acos-high", "acos-high-jp", "stockout"]


def test_an_empty_rule_set_matches_nothing() -> None:
    rules = RuleSet([])
    assert len(rules) == 0
    assert rules.matching(["acos"], SKU) == []


def test_rules_filtered_by_store_are_found_only_for_their_stores() -> None:
    text = "rules:\n" + "".join(
        f"  - name: r{n}\n    kpi: acos\n    by: [store, sku]\n"
        '    thresholds: {warning: "> 35%"}\n'
        + (f"    filters: {{store: [s{n}, s{n + 1}]}}\n" if n else "")
        for n in range(4)
    )
    rules = RuleSet(load_text(text, "r.yaml"))
    labels = {"platform": "amazon", "marketplace": "US", "store": "s2", "sku": "A"}
    assert [r.name for r in rules.matching(["acos"], SKU, labels)] == ["r0", "r1", "r2"]
    assert [r.name for r in rules.matching(["acos"], SKU)] == ["r0", "r1", "r2", "r3"]
