"""Worker settings from the environment (KPIWATCH_*) or a secrets folder, never hard-coded.

Secrets are SecretStr: printing the settings shows '**********'.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KPIWATCH_", secrets_dir=None, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    # Prefix for every topic and the Faust app id, so several deployments (or tests) share a broker.
    topic_prefix: str = ""
    app_id: str = "kpiwatch"
    partitions: int = Field(default=4, ge=1)
    rules: list[Path] = []
    webhook_url: SecretStr | None = None
    # Sinks (DingTalk, Feishu, WeCom, Slack, Teams, email, Alertmanager, webhooks) as YAML.
    sinks_file: Path | None = None
    # Shared delivery state (dedupe keys, rate limits, silences); without it, per process only.
    redis_url: str | None = None
    # Most KPI series /metrics exports; beyond it new series are dropped (and counted).
    kpi_series_cap: int = Field(default=10_000, ge=0)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    data_dir: Path = Path(".kpiwatch")
    # Reference data (see streams/reference.py for the file formats).
    reporting_currency: str = "USD"
    fx_file: Path | None = None
    costs_file: Path | None = None
    targets_file: Path | None = None
    teams_file: Path | None = None
    # Faust's 60 s defaults make a first join take ~30 s and a restart ~100 s on these machines.
    session_timeout_s: float = 10.0
    rebalance_timeout_s: float = 10.0
    # Static membership: a restarted worker with the same id takes its partitions back without a
    # full rebalance.
    instance_id: str | None = None
    # A store partition that has sent nothing for this long no longer holds back the judging of
    # cross-store scopes (its stores are quiet: nothing of theirs is missing).
    rollup_idle_s: float = Field(default=30.0, gt=0)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
