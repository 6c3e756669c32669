"""`kpiwatch rules test`: a backtest that prints each transition and a summary per rule."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from connectors.simulator import simulate
from streams.cli import main
from streams.events import encode

START = "2026-11-20T00:00:00+00:00"
RULES = """\
calendars:
  weekend-jp:
    hours: 00:00-00:00
    days: [sat, sun]
rules:
  - name: stockout
    kpi: available
    by: [store, sku]
    thresholds: {critical: "< 1", warning: "< 10"}
  - name: acos-jp
    kpi: acos
    by: [store, sku]
    filters: {marketplace: JP}
    require: ad_spend >= 3000 JPY
    thresholds: {critical: "> 60%", warning: "> 35%"}
    mute: weekend-jp
  - name: never
    kpi: orders
    by: [store]
    thresholds: {warning: "> 1000000"}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.jsonl"
    lines = [encode(e) for e in simulate(datetime.fromisoformat(START), hours=48)]
    events.write_bytes(b"\n".join(lines) + b"\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, "utf-8")
    return rules, events


def test_backtest_prints_transitions_with_times_and_a_summary(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = files
    assert main(["rules", "test", str(rules), "--events", str(events)]) == 0
    out = capsys.readouterr().out
    transitions, summary = out.split("\n\n")
    assert "2026-11-20T11:59:00+00:00  FIRING           [CRITICAL] stockout" in transitions
    # 2026-11-21 and -22 are a weekend: the JP ACoS spike is recorded, muted.
    assert "FIRING (muted)   [WARNING] acos-jp" in transitions
    lines = summary.splitlines()
    assert lines[0] == "1584 events, 0 rejected; per rule:"
    assert lines[1:] == [
        "  stockout  fired 2  muted 0  resolved 0",
        "  acos-jp   fired 0  muted 2  resolved 0",
        "  never     fired 0  muted 0  resolved 0",
    ]


def test_backtest_of_a_broken_rule_file_lists_every_problem(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = files
    rules.write_text(
        RULES.replace("kpi: orders", "kpi: order").replace("mute: weekend-jp", "mute: wk")
    )
    assert main(["rules", "test", str(rules), "--events", str(events)]) == 2
    err = capsys.readouterr().err
    assert "kpiwatch: 2 problem(s) in the rules:" in err
    assert "unknown calendar 'wk'" in err
    assert "unknown kpi 'order'" in err
