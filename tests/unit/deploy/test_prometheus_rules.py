"""deploy/prometheus/kpiwatch-rules.yml under `promtool test rules` (Debian's prometheus package,
installed by deploy/dev.sh test): every alert has a case where it fires and one where it stays
silent, and the cases pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "kpiwatch-rules.yml"
CASES = PROMETHEUS / "kpiwatch-rules.test.yml"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise RuntimeError(
            "promtool is missing: `bash deploy/services.sh install prometheus` installs it"
        )
    return found


def test_promtool_runs_every_case() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", CASES.name],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    yaml = YAML(typ="safe")
    alerts = {
        rule["alert"]
        for group in yaml.load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.load(CASES.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alerts - fires == set(), "alerts with no case where they fire"
    assert alerts - silent == set(), "alerts with no case where they stay silent"
    assert (fires | silent) - alerts == set(), "cases for alerts that do not exist"


def test_every_metric_the_rules_use_is_exported() -> None:
    """A metric renamed in the code and not in the rules would leave an alert silent forever."""
    code = "".join(path.read_text() for path in (REPO / "streams").glob("*.py"))
    used = set(re.findall(r"\bkpiwatch_[a-z_]+", RULES.read_text()))
    missing = set()
    for name in used:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if f'"{base}"' not in code and f'"{base.removesuffix("_total")}"' not in code:
            missing.add(name)
    assert used
    assert missing == set(), "metrics the rules use that streams/ does not export"
