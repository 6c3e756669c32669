"""The worker's sinks come from the sinks file, the console flag and the webhook shortcut."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from rules.errors import ConfigError
from streams.settings import Settings
from streams.worker import build_sinks


def test_sinks_file_console_and_webhook_shortcut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_ROBOT", "https://oapi.dingtalk.com/robot/send?access_token=T")
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text("sinks:\n  - name: ops\n    type: dingtalk\n    url: {env: OPS_ROBOT}\n")
    settings = Settings(sinks_file=sinks_file, webhook_url=SecretStr("http://127.0.0.1:9/h"))
    assert [s.name for s in build_sinks(settings)] == ["console", "ops", "webhook"]
    assert [s.name for s in build_sinks(settings, console=False)] == ["ops", "webhook"]


def test_a_broken_sinks_file_stops_the_worker_before_it_starts(tmp_path: Path) -> None:
    sinks_file = tmp_path / "sinks.yaml"
    sinks_file.write_text("sinks:\n  - name: ops\n    type: pager\n")
    with pytest.raises(ConfigError, match="unknown sink type 'pager'"):
        build_sinks(Settings(sinks_file=sinks_file))
