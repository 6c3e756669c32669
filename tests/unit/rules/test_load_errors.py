"""Bad rule files, one per mistake: the exact message (file:line: what) a rule author reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.errors import ConfigError, Problem
from rules.kpis import CATALOG
from rules.load import load_paths, load_text

BAD = Path(__file__).parent / "bad"

KNOWN_KPIS = ", ".join(sorted(CATALOG))

# file name -> (line, message) of each problem, in order.
EXPECTED: dict[str, list[tuple[int | None, str]]] = {
    "unknown-key.yaml": [(6, "unknown key 'severity'")],
    "unknown-kpi.yaml": [
        (3, f"rule 'refunds-high': unknown kpi 'refund_rate' (known: {KNOWN_KPIS})"),
    ],
    "missing-thresholds.yaml": [(2, "missing required key 'thresholds'")],
    "bad-threshold-text.yaml": [
        (5, "warning: cannot read 'more than 35%': write it as '> 35%', '< 10' or '>= 20 USD'"),
    ],
    "percent-on-count.yaml": [
        (5, "rule 'stockout': '< 10%' is a percentage but available is a count"),
    ],
    "currency-on-ratio.yaml": [
        (4, "rule 'acos-high': '> 20 USD' has a currency but acos is a ratio"),
    ],
    "window-on-available.yaml": [
        (5, "rule 'stockout': available is a current level, not a total over time; remove window:"),
    ],
    "scope-not-available.yaml": [
        (
            4,
            "rule 'stock-by-marketplace': available is kept per store and sku, not per "
            "marketplace; write by: [store, sku] and use filters: to pick marketplaces or stores",
        ),
    ],
    "require-unknown-kpi.yaml": [
        (6, f"rule 'acos-high': require: 'spend' is not a KPI (known: {KNOWN_KPIS})"),
    ],
    "duplicate-names.yaml": [
        (7, f"rule name 'acos-high' is already used at {BAD / 'duplicate-names.yaml'}:2"),
    ],
    # The unclosed quote is on line 5, where the message points, not at the end of the file.
    "invalid-yaml.yaml": [
        (5, "not valid YAML: while scanning a quoted scalar, found unexpected end of stream"),
    ],
    # A bad indent on line 6 is reported there, not where the rule's mapping began (line 2).
    "bad-indent.yaml": [
        (
            6,
            "not valid YAML: expected <block end>, but found '<block mapping start>' (in the "
            "block mapping that starts on line 2); check this line's indentation",
        ),
    ],
    # Schema and catalog mistakes of one rule, all of them, each at its own line.
    "schema-and-catalog-mistakes.yaml": [
        (5, "window: Input should be '1h', '24h', '1d', '7d', '28d' or 'mtd'"),
        (6, "unknown key 'colour'"),
        (7, "rule 'acos-high': '> 35 USD' has a currency but acos is a ratio"),
        (
            9,
            "rule 'acos-high': unknown calendar 'golden-week' (known: none defined; add them "
            "under calendars:)",
        ),
    ],
    "scorecard-rule-by-store.yaml": [
        (4, "rule 'score-low': a scorecard is a team's; write by: [team]"),
        (5, "rule 'score-low': a scorecard rule judges the card's bands; remove thresholds:"),
    ],
    "empty.yaml": [(None, "the file is empty; expected 'rules:'")],
    "bad-severity.yaml": [
        (5, "thresholds: 'severe' is not allowed here; input should be 'warning' or 'critical'"),
    ],
    "bad-duration.yaml": [
        (6, "for: cannot read '30 minutes' as a duration: write it as '30m', '2h' or '1d'"),
    ],
    "unknown-calendar.yaml": [
        (9, "rule 'acos-high': unknown calendar 'prime-day' (known: golden-week)"),
    ],
    "threshold-order.yaml": [
        (
            4,
            "rule 'acos-high': warning '> 60%' can never fire: every value above it is already "
            "critical '> 35%'; critical must be beyond warning",
        ),
    ],
    "clear-overlaps.yaml": [
        (
            6,
            "rule 'acos-high': clear '< 40%' overlaps warning '> 35%': a value could breach and "
            "clear at once",
        ),
    ],
    "unknown-placeholder.yaml": [
        (
            6,
            "rule 'acos-high': message en: unknown placeholder {limit} (known: rule, kpi, "
            "severity, status, value, threshold, baseline, scope, window)",
        ),
    ],
    "unknown-holiday-country.yaml": [
        (2, "calendar 'holidays-xx': no public holidays are known for country 'XX'"),
    ],
    "unknown-default-key.yaml": [(3, "unknown key 'sevrity'")],
    "baseline-not-a-share.yaml": [
        (
            5,
            "rule 'gmv-drop': a baseline rule judges the value as a share of the usual one; "
            "write thresholds such as '< 60%' (down 40%) or '> 150%' (up 50%)",
        ),
    ],
    "no-data-with-thresholds.yaml": [
        (5, "rule 'silent-feed': a no_data rule fires on silence; remove thresholds:"),
    ],
    # An impossible date unquoted: YAML would make it a date and crash; it is read as text.
    "bad-calendar-date.yaml": [
        (
            3,
            "dates: cannot read '2026-07-32': write a date as '2026-11-11', '11-11' (every "
            "year) or a range '2026-07-08..2026-07-09'",
        ),
    ],
}


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_paths([path])
    return caught.value.problems


def test_every_bad_file_has_an_expected_message() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()))
def test_bad_file_reports_line_and_message(
    name: str, expected: list[tuple[int | None, str]]
) -> None:
    path = BAD / name
    problems = problems_of(path)
    assert [(p.line, p.message) for p in problems] == expected
    assert all(p.file == str(path) for p in problems)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_error_text_is_file_colon_line_colon_message(name: str) -> None:
    path = BAD / name
    with pytest.raises(ConfigError) as caught:
        load_paths([path])
    lines = [
        f"{path}:{line}: {message}" if line is not None else f"{path}: {message}"
        for line, message in EXPECTED[name]
    ]
    assert str(caught.value) == "\n".join(lines)


def test_two_broken_rules_in_one_file_give_two_problems() -> None:
    text = """\
rules:
  - name: refunds-high
    kpi: refund_rate
    thresholds:
      warning: "> 5%"

  - name: stockout
    kpi: available
    by: [store, sku]
    window: 1d
    thresholds:
      critical: "< 1"
"""
    with pytest.raises(ConfigError) as caught:
        load_text(text, "two.yaml")
    assert [str(p) for p in caught.value.problems] == [
        f"two.yaml:3: rule 'refunds-high': unknown kpi 'refund_rate' (known: {KNOWN_KPIS})",
        "two.yaml:10: rule 'stockout': available is a current level, not a total over time; "
        "remove window:",
    ]


def test_two_schema_mistakes_in_one_file_give_two_problems() -> None:
    text = """\
rules:
  - name: acos-high
    kpi: acos
    thresholds:
      warning: "> 35%"
    colour: red
  - name: stockout
    kpi: available
"""
    with pytest.raises(ConfigError) as caught:
        load_text(text, "two.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "two.yaml:6: unknown key 'colour'",
        "two.yaml:7: missing required key 'thresholds'",
    ]


def test_one_rule_with_several_mistakes_reports_each() -> None:
    text = """\
rules:
  - name: stockout
    kpi: available
    by: [store, sku]
    window: 1d
    thresholds:
      critical: "< 1%"
"""
    with pytest.raises(ConfigError) as caught:
        load_text(text, "r.yaml")
    assert [p.message for p in caught.value.problems] == [
        "rule 'stockout': available is a current level, not a total over time; remove window:",
        "rule 'stockout': '< 1%' is a percentage but available is a count",
    ]


def test_problems_of_several_files_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_paths([BAD / "unknown-key.yaml", BAD / "empty.yaml"])
    assert [(Path(p.file).name, p.line) for p in caught.value.problems] == [
        ("unknown-key.yaml", 6),
        ("empty.yaml", None),
    ]


def test_a_missing_path_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_paths([missing])
    assert [str(p) for p in caught.value.problems] == [f"{missing}: no such file or folder"]


def test_a_file_without_rules_key_is_a_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        load_text("rule:\n  - name: x\n", "f.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:1: missing required key 'rules'",
        "f.yaml:1: unknown key 'rule'",
    ]


def test_schema_and_catalog_mistakes_in_different_rules_are_reported_together() -> None:
    text = """\
rules:
  - name: acos-high
    kpi: acos
    thresholds:
      warning: "> 35%"
    colour: red
  - name: refunds-high
    kpi: refund_rate
    thresholds:
      warning: "> 5%"
"""
    with pytest.raises(ConfigError) as caught:
        load_text(text, "two.yaml")
    assert [p.line for p in caught.value.problems] == [6, 8]


def test_load_text_rejects_duplicate_rule_names() -> None:
    with pytest.raises(ConfigError):
        load_text((BAD / "duplicate-names.yaml").read_text("utf-8"), "dup.yaml")
