"""Shared defaults, calendars across files, durations, clear and message checks at load time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rules.errors import ConfigError
from rules.load import load_paths, load_text
from rules.schema import parse_duration

DEFAULTS = """\
defaults:
  by: [store, sku]
  for: 15m
  repeat: 4h
  labels: {team: advertising, channel: ads}
rules:
  - name: acos-high
    kpi: acos
    thresholds: {warning: "> 35%"}
    labels: {channel: ppc}
  - name: acos-store
    kpi: acos
    by: [store]
    repeat: 1h
    thresholds: {warning: "> 35%"}
"""


def test_rules_inherit_the_file_defaults_and_override_them() -> None:
    sku, store = load_text(DEFAULTS, "d.yaml")
    assert (sku.level, sku.for_, sku.repeat) == (
        frozenset({"store", "sku"}),
        timedelta(minutes=15),
        timedelta(hours=4),
    )
    assert dict(sku.labels) == {"team": "advertising", "channel": "ppc"}
    assert (store.level, store.repeat) == (frozenset({"store"}), timedelta(hours=1))


def test_a_calendars_file_serves_the_rules_of_another(tmp_path: Path) -> None:
    (tmp_path / "calendars.yaml").write_text(
        "calendars:\n  prime-day:\n    dates: 2026-07-08..2026-07-09\nrules: []\n", "utf-8"
    )
    (tmp_path / "acos.yaml").write_text(
        'rules:\n  - name: a\n    kpi: acos\n    thresholds: {warning: "> 35%"}\n'
        "    mute: prime-day\n",
        "utf-8",
    )
    (rule,) = load_paths([tmp_path]).rules
    assert [c.name for c in rule.mute] == ["prime-day"]


def test_a_calendar_defined_twice_across_files_is_a_problem(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("calendars:\n  p:\n    dates: 11-11\nrules: []\n", "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_paths([tmp_path])
    assert [p.message for p in caught.value.problems] == [
        f"calendar 'p' is already defined in {tmp_path / 'a.yaml'}"
    ]


def test_a_holiday_name_that_matches_nothing_is_a_problem() -> None:
    text = "calendars:\n  gw:\n    holidays: JP\n    names: Golden Week\nrules: []\n"
    with pytest.raises(ConfigError) as caught:
        load_text(text, "c.yaml")
    (problem,) = caught.value.problems
    assert problem.message.startswith("calendar 'gw': no JP holiday is named like 'Golden Week'")
    assert "Showa Day" in problem.message


def test_a_calendar_needs_exactly_one_kind() -> None:
    text = "calendars:\n  x:\n    dates: 11-11\n    hours: 09:00-18:00\nrules: []\n"
    with pytest.raises(ConfigError) as caught:
        load_text(text, "c.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "c.yaml:2: calendar 'x': a calendar takes exactly one of holidays:, dates: or hours:"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_durations_read_the_way_people_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "2 hours", "h", "-1h", 30])
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="write it as '30m', '2h' or '1d'"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("clear", "message"),
    [
        ("> 30%", "clear '> 30%' points the same way as warning '> 35%'"),
        ("< 35%", None),
        ("<= 35%", None),
        ("< 36%", "clear '< 36%' overlaps"),
        ("< 30 USD", "'< 30 USD' has a currency but acos is a ratio"),
    ],
)
def test_clear_must_lie_beyond_the_thresholds(clear: str, message: str | None) -> None:
    text = (
        f'rules:\n  - name: a\n    kpi: acos\n    thresholds: {{warning: "> 35%"}}\n'
        f'    clear: "{clear}"\n'
    )
    if message is None:
        (rule,) = load_text(text, "r.yaml")
        assert str(rule.clear) == clear
        return
    with pytest.raises(ConfigError) as caught:
        load_text(text, "r.yaml")
    (problem,) = caught.value.problems
    assert message in problem.message


@pytest.mark.parametrize(
    ("warning", "critical", "fires"),
    [
        ("> 35%", "> 60%", True),
        ("> 60%", "> 35%", False),
        ("> 35%", "> 35%", False),
        (">= 35%", "> 35%", True),
        ("< 10", "< 1", True),
        ("< 1", "< 10", False),
        ("> 35%", "< 5%", True),
    ],
)
def test_threshold_order(warning: str, critical: str, fires: bool) -> None:
    text = (
        f"rules:\n  - name: a\n    kpi: acos\n    thresholds:\n"
        f'      warning: "{warning}"\n      critical: "{critical}"\n'
    )
    if fires:
        assert load_text(text, "r.yaml")
        return
    with pytest.raises(ConfigError, match="can never fire"):
        load_text(text, "r.yaml")


def test_a_formatted_placeholder_is_a_problem() -> None:
    text = (
        'rules:\n  - name: a\n    kpi: acos\n    thresholds: {warning: "> 35%"}\n'
        '    message: {zh: "{value:.2f} {"}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_text(text, "r.yaml")
    assert [p.message for p in caught.value.problems] == [
        "rule 'a': message zh: cannot read the template: Single '{' encountered in format "
        "string (write a literal brace as '{{' or '}}')"
    ]


def test_days_unit_is_for_days_kpis() -> None:
    ok = "rules:\n  - name: a\n    kpi: days_of_cover\n    by: [store, sku]\n"
    ok += '    thresholds: {warning: "< 7d"}\n'
    assert load_text(ok, "r.yaml")
    bad = 'rules:\n  - name: a\n    kpi: acos\n    thresholds: {warning: "> 7d"}\n'
    with pytest.raises(ConfigError, match="'> 7d' is in days but acos is a ratio"):
        load_text(bad, "r.yaml")
