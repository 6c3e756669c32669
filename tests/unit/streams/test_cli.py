"""The embedded runtime through the command line: replay, demo, simulate, rules."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from connectors.simulator import simulate
from streams.cli import main
from streams.events import encode

START = "2026-11-20T00:00:00+00:00"
ALERT_FIELDS = {
    "rule",
    "severity",
    "status",
    "labels",
    "value",
    "threshold",
    "window_start",
    "window_end",
    "at",
}


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    start = datetime.fromisoformat(START)
    lines = [encode(event) for event in simulate(start, hours=48)]
    # Bad input in the middle of good input: none of it may stop the replay.
    lines[10:10] = [b"{not json", b'{"type": "order", "event_id": "x"}']
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_replay_prints_alert_json_lines_and_reports_bad_lines(
    events_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(events_file)]) == 0
    out, err = capsys.readouterr()
    alerts = [json.loads(line) for line in out.splitlines()]
    assert alerts, "the simulated incidents must raise alerts"
    assert all(alert.keys() >= ALERT_FIELDS for alert in alerts)
    rules = {(a["rule"], a["severity"], a["labels"]["sku"]) for a in alerts}
    assert ("stockout", "critical", "SKU-000") in rules
    assert ("acos-high-jp", "critical", "SKU-101") in rules
    assert f"rejected {events_file}:11: not valid JSON" in err
    assert f"rejected {events_file}:12: order.occurred_at: Field required" in err
    assert "2 rejected" in err


def test_replay_writes_dead_letter_file(events_file: Path, tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    assert main(["replay", str(events_file), "--dead-letter", str(dead)]) == 0
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [r["source"] for r in records] == [f"{events_file}:11", f"{events_file}:12"]


def test_replay_with_a_broken_rule_file_lists_problems(
    events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: x\n    kpi: nope\n    thresholds: {warning: '> 1'}\n")
    assert main(["replay", str(events_file), "--rules", str(rules)]) == 2
    assert f"{rules}:3: rule 'x': unknown kpi 'nope'" in capsys.readouterr().err


def test_replay_of_a_missing_file_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/events.jsonl"]) == 1
    assert "/nonexistent/events.jsonl: no such file" in capsys.readouterr().err


def test_demo_shows_the_injected_incidents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--start", START]) == 0
    out, err = capsys.readouterr()
    assert "[CRITICAL] stockout: available 0 < 1" in out
    assert "[CRITICAL] acos-high-jp" in out
    assert "alerts" in err


def test_rules_check_and_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    library = Path(__file__).parents[3] / "rules" / "library"
    assert main(["rules", "check", str(library)]) == 0
    assert main(["rules", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert "rules" in schema["properties"]


def test_console_script_help_is_installed() -> None:
    for command in (["--help"], ["replay", "--help"], ["worker", "--help"], ["demo", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", *command],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "usage: kpiwatch" in result.stdout


def test_simulate_prints_the_same_events_as_the_simulator(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    assert main(["simulate", "--start", START, "--hours", "3"]) == 0
    printed = capsysbinary.readouterr().out.splitlines()
    assert printed == [encode(e) for e in simulate(datetime.fromisoformat(START), hours=3)]


def test_kpis_prints_one_row_per_scope_with_native_money(
    events_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kpis", str(events_file), "--by", "sku", "--window", "7d"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 12  # 3 stores x 4 SKUs
    jp = next(r for r in rows if r["scope"]["marketplace"] == "JP")
    assert jp["values"]["gmv"] is None  # no JPY rate given: undefined in USD, not 0
    assert jp["native_currency"] == "JPY"
    assert int(jp["native"]["gmv"]) > 0
    assert "2 rejected" in err


def test_kpis_names_the_levels_it_knows(
    events_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kpis", str(events_file), "--by", "sku,team"]) == 1
    assert "use one of: store; store,sku; store,campaign; marketplace" in capsys.readouterr().err


def test_silence_is_reachable_and_says_when_redis_is_down(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["silence", "--redis-url", "redis://127.0.0.1:1/0", "list"]) == 1
    assert "kpiwatch silence: cannot reach Redis" in capsys.readouterr().err
