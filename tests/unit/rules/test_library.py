"""The shipped rule library: loads as one set, explains itself, and its JSON Schema is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules.load import load_paths
from rules.schema import json_schema
from rules.scorecard import scorecard_json_schema

ROOT = Path(__file__).parents[3]
LIBRARY = ROOT / "rules" / "library"
FILES = sorted(LIBRARY.glob("*.yaml"))


def test_the_library_loads_as_one_set_with_unique_names() -> None:
    rules = load_paths([LIBRARY])
    names = {rule.name for rule in rules.rules}
    assert {
        "stockout",
        "low-days-of-cover",
        "campaign-acos-high",
        "spend-without-sales",
        "gmv-drop-vs-usual",
        "target-behind-pace",
        "cancel-rate-spike",
        "return-rate-spike",
        "silent-order-feed",
    } <= names


def test_every_library_rule_says_what_it_is_for() -> None:
    assert all(rule.description for rule in load_paths([LIBRARY]).rules)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_library_file_points_editors_at_the_schema(path: Path) -> None:
    first = path.read_text("utf-8").splitlines()[0]
    schema = "scorecards" if path.name == "scorecards.yaml" else "rules"
    assert first == f"# yaml-language-server: $schema=../../deploy/{schema}.schema.json"


def test_the_exported_schema_file_is_current() -> None:
    exported = json.loads((ROOT / "deploy" / "rules.schema.json").read_text("utf-8"))
    assert exported == json_schema(), "run: kpiwatch rules schema > deploy/rules.schema.json"


def test_the_exported_scorecard_schema_file_is_current() -> None:
    exported = json.loads((ROOT / "deploy" / "scorecards.schema.json").read_text("utf-8"))
    assert exported == scorecard_json_schema(), (
        "run: kpiwatch rules schema --scorecards > deploy/scorecards.schema.json"
    )


def test_the_library_ships_example_scorecards() -> None:
    assert set(load_paths([LIBRARY]).scorecards) == {"marketplace-ops", "advertising"}
