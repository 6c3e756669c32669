"""deploy/compose: the Compose file against the Compose Specification (check-jsonschema's
vendored schema, offline), and the files it mounts as kpiwatch, Prometheus and Alertmanager
read them. No Docker engine runs here: the stack itself is not started (README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from unit.deploy.support import DEPLOY, run

from sinks.load import load_setup_path
from streams.connect import load_section

COMPOSE = DEPLOY / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((COMPOSE / "compose.yaml").read_text())
    return loaded


def test_compose_file_follows_the_compose_specification() -> None:
    result = run(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml", cwd=COMPOSE
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_bind_mount_and_build_file_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name} mounts {source}, which is missing"
        build = service.get("build")
        if build is not None:
            assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()


def test_each_worker_has_its_own_instance_id_and_is_scraped(compose: dict[str, Any]) -> None:
    workers = {
        name: service
        for name, service in compose["services"].items()
        if service.get("command") == ["worker"]
    }
    assert len(workers) >= 2
    ids = [w["environment"]["KPIWATCH_INSTANCE_ID"] for w in workers.values()]
    assert len(set(ids)) == len(ids)
    partitions = {int(w["environment"]["KPIWATCH_PARTITIONS"]) for w in workers.values()}
    assert len(partitions) == 1
    assert len(workers) <= partitions.pop(), "more workers than partitions: some would idle"
    scrape = YAML(typ="safe").load((COMPOSE / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: {t for c in job["static_configs"] for t in c["targets"]}
        for job in scrape["scrape_configs"]
    }
    assert targets["kpiwatch"] == {f"{name}:6066" for name in workers}
    connectors = [n for n, s in compose["services"].items() if "connect" in s.get("command", [])]
    assert targets["kpiwatch-connect"] == {f"{name}:9108" for name in connectors}


def test_prometheus_config_and_its_rules_load() -> None:
    result = run("promtool", "check", "config", "prometheus.yml", cwd=COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_loads() -> None:
    result = run("amtool", "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_sinks_and_connector_files_load_as_kpiwatch_reads_them(tmp_path: Path) -> None:
    setup = load_setup_path(COMPOSE / "sinks.yaml", environ={})
    assert [sink.name for sink in setup.sinks] == ["alertmanager"]
    # The connector's secret is a Compose secret under /run/secrets: read from here instead.
    (tmp_path / "shopify-webhook-secret").write_text("not-a-real-secret")
    text = (COMPOSE / "connect.yaml").read_text().replace("/run/secrets", str(tmp_path))
    config = tmp_path / "connect.yaml"
    config.write_text(text)
    kind, section = load_section(config, "shopify", environ={})
    assert kind.key == "shopify"
    assert json.dumps(section.model_dump(mode="json")).count("shopify-us-01") == 1


def test_grafana_datasource_points_at_the_stacks_prometheus(compose: dict[str, Any]) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning" / "datasources"
    urls = [
        source["url"]
        for path in provisioning.glob("*.yaml")
        for source in YAML(typ="safe").load(path.read_text())["datasources"]
        if source["type"] == "prometheus"
    ]
    assert urls, "no Prometheus datasource provisioned"
    for url in urls:
        host, _, port = url.removeprefix("http://").partition(":")
        assert host in compose["services"], url
        command = " ".join(compose["services"][host].get("command", []))
        assert port.rstrip("/") == "9090"  # Prometheus's default port, as the service runs it
        assert "--web.listen-address" not in command
