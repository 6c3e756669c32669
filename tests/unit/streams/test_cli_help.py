"""The click command line keeps what the argparse one accepted, and every --help has examples."""

from __future__ import annotations

import json
import re

import pytest

from streams.cli import kpiwatch, main

COMMANDS = [
    ["demo"],
    ["replay"],
    ["kpis"],
    ["scorecard"],
    ["report"],
    ["simulate"],
    ["produce"],
    ["produce-fx"],
    ["connect"],
    ["worker"],
    ["alerts"],
    ["alerts", "resend"],
    ["rules"],
    ["rules", "check"],
    ["rules", "schema"],
    ["rules", "test"],
    ["silence"],
]


def test_every_command_is_listed_and_has_help_examples() -> None:
    assert sorted(kpiwatch.commands) == sorted({c[0] for c in COMMANDS})


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_has_examples(
    command: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main([*command, flag])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kpiwatch {' '.join(command)} ")
    assert re.search(r"^ *examples:\n +kpiwatch ", out, re.IGNORECASE | re.MULTILINE)


def test_a_usage_error_exits_2_with_the_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["simulate", "--stores", "many"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: kpiwatch simulate [OPTIONS]")
    assert "Invalid value for '--stores': 'many' is not a valid integer." in err


def test_a_unique_prefix_names_an_option_as_with_argparse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    start = "2026-11-20T00:00:00+00:00"
    assert main(["simulate", "--start", start, "--hours", "1", "--stores", "1"]) == 0
    spelled_out = capsys.readouterr().out
    assert main(["simulate", "--start", start, "--hou", "1", "--stor=1"]) == 0
    assert capsys.readouterr().out == spelled_out
    assert {json.loads(line)["store_id"] for line in spelled_out.splitlines()} == {"amazon-us-01"}


def test_an_ambiguous_prefix_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit:
        main(["kpis", "events.jsonl", "--t", "x"])  # --timezone or --targets or --teams
    assert exit.value.code == 2
