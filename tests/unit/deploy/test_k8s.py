"""deploy/k8s: the base and the example overlay rendered as `kubectl apply -k` renders them
(tests/unit/deploy/kustomize.py), every resource validated against the Kubernetes API schemas
of a current release (kubernetes-validate, strict: unknown fields are errors), and the wiring
checked: probes, instance ids, selectors, and the ConfigMaps and Secrets read by kpiwatch's own
loaders. PodMonitor is a Prometheus Operator CRD that kubernetes-validate has no schema for: it
is checked field by field here instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from unit.deploy.kustomize import Resource, build
from unit.deploy.support import DEPLOY

from rules.load import load_paths
from sinks.load import load_setup_path
from streams.connect import load_section

K8S = DEPLOY / "k8s"
KUBERNETES = kubernetes_validate.latest_version()
SECRETS = "/run/secrets/kpiwatch"
RENDERS = {"base": K8S / "base", "overlay": K8S / "overlays" / "example"}


@pytest.fixture(scope="module", params=sorted(RENDERS))
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return build(RENDERS[request.param])


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def pod_spec(resource: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def test_every_resource_is_valid_for_a_current_kubernetes(rendered: list[Resource]) -> None:
    assert KUBERNETES >= "1.34"
    for resource in rendered:
        if resource["kind"] == "PodMonitor":
            continue
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def test_the_fleet_has_every_part(rendered: list[Resource]) -> None:
    kinds = {(r["kind"], r["metadata"]["name"]) for r in rendered}
    assert {
        ("StatefulSet", "kpiwatch-worker"),
        ("Service", "kpiwatch-worker"),
        ("Service", "kpiwatch-api"),
        ("PodDisruptionBudget", "kpiwatch-worker"),
        ("PodMonitor", "kpiwatch-worker"),
        ("PodMonitor", "kpiwatch-connect"),
        ("ConfigMap", "kpiwatch-rules"),
        ("ConfigMap", "kpiwatch-sinks"),
        ("ConfigMap", "kpiwatch-connect"),
        ("ConfigMap", "kpiwatch-env"),
    } <= kinds
    # A Deployment per connector section of the connect ConfigMap.
    connect = one(rendered, "ConfigMap", "kpiwatch-connect")["data"]["connect.yaml"]
    sections = [line.split(":")[0] for line in connect.splitlines() if line[:1].isalpha()]
    for section in sections:
        deployment = one(rendered, "Deployment", f"kpiwatch-connect-{section.replace('_', '-')}")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_workers_are_a_statefulset_named_for_static_membership(rendered: list[Resource]) -> None:
    workers = one(rendered, "StatefulSet", "kpiwatch-worker")
    (container,) = pod_spec(workers)["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KPIWATCH_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod_spec(workers)["terminationGracePeriodSeconds"] >= 30
    partitions = int(one(rendered, "ConfigMap", "kpiwatch-env")["data"]["KPIWATCH_PARTITIONS"])
    assert workers["spec"]["replicas"] <= partitions, "more workers than partitions"
    # A subPath mount never sees a ConfigMap update: rules must be mounted as a folder.
    rules = next(m for m in container["volumeMounts"] if m["name"] == "rules")
    assert "subPath" not in rules
    assert env["KPIWATCH_RULES"]["value"] == f'["{rules["mountPath"]}"]'


def test_selectors_find_the_pods(rendered: list[Resource]) -> None:
    pods = [
        (r["metadata"]["name"], r["spec"]["template"]["metadata"]["labels"], pod_spec(r))
        for r in rendered
        if r["kind"] in ("StatefulSet", "Deployment")
    ]

    def matching(selector: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        return [(n, s) for n, labels, s in pods if selector.items() <= labels.items()]

    for resource in rendered:
        spec = resource.get("spec", {})
        if resource["kind"] == "Service":
            found = matching(spec["selector"])
            assert found, f"Service {resource['metadata']['name']} selects no pod"
            ports = {p["name"] for _, s in found for c in s["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in spec["ports"]} <= ports
        elif resource["kind"] in ("PodDisruptionBudget", "PodMonitor"):
            assert matching(spec["selector"]["matchLabels"]), resource["metadata"]["name"]


def test_podmonitors_scrape_named_ports_under_the_rules_job_names(
    rendered: list[Resource],
) -> None:
    rules = (DEPLOY / "prometheus" / "kpiwatch-rules.yml").read_text()
    for monitor in (r for r in rendered if r["kind"] == "PodMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        assert set(spec) == {"selector", "podMetricsEndpoints"}
        pods = [
            pod_spec(r)
            for r in rendered
            if r["kind"] in ("StatefulSet", "Deployment")
            and spec["selector"]["matchLabels"].items()
            <= r["spec"]["template"]["metadata"]["labels"].items()
        ]
        for endpoint in spec["podMetricsEndpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "relabelings"}
            for pod in pods:
                names = {p["name"] for c in pod["containers"] for p in c["ports"]}
                assert endpoint["port"] in names
            (relabel,) = endpoint["relabelings"]
            assert relabel["targetLabel"] == "job"
            assert f'job="{relabel["replacement"]}"' in rules


def secrets_of(rendered: list[Resource], workload: Resource, folder: Path) -> Path:
    """The Secret mounted at /run/secrets/kpiwatch in `workload`, written out as the kubelet
    would (one file per key) under `folder`; the base has none, the overlay's example is used."""
    spec = pod_spec(workload)
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == SECRETS]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secrets = [r for r in rendered if r["kind"] == "Secret"] or build(RENDERS["overlay"])
    secret = one(secrets, "Secret", volume["secret"]["secretName"])
    folder.mkdir()
    for key, value in secret["stringData"].items():
        (folder / key).write_text(value)
    return folder


def test_configmaps_load_as_kpiwatch_reads_them(rendered: list[Resource], tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in one(rendered, "ConfigMap", "kpiwatch-rules")["data"].items():
        (rules / name).write_text(text)
    assert len(load_paths([rules])) > 0

    workers = one(rendered, "StatefulSet", "kpiwatch-worker")
    secrets = secrets_of(rendered, workers, tmp_path / "sink-secrets")
    sinks = tmp_path / "sinks.yaml"
    text = one(rendered, "ConfigMap", "kpiwatch-sinks")["data"]["sinks.yaml"]
    assert f"{{file: {SECRETS}/" in text
    sinks.write_text(text.replace(SECRETS, str(secrets)))
    assert load_setup_path(sinks, environ={}).sinks

    connect = one(rendered, "ConfigMap", "kpiwatch-connect")["data"]["connect.yaml"]
    for deployment in (r for r in rendered if r["kind"] == "Deployment"):
        source = pod_spec(deployment)["containers"][0]["args"][2]
        folder = tmp_path / source
        folder.mkdir()
        secrets = secrets_of(rendered, deployment, folder / "secrets")
        config = folder / "connect.yaml"
        config.write_text(connect.replace(SECRETS, str(secrets)))
        kind, _ = load_section(config, source, environ={})
        assert kind.key == source.replace("-", "_")


def test_the_overlay_changes_what_it_says() -> None:
    overlay = build(RENDERS["overlay"])
    assert {r["metadata"].get("namespace") for r in overlay if r["kind"] != "Namespace"} == {
        "kpiwatch"
    }
    workers = one(overlay, "StatefulSet", "kpiwatch-worker")
    (container,) = pod_spec(workers)["containers"]
    assert container["image"] == "registry.example.com/kpiwatch:0.1.0"
    assert workers["spec"]["replicas"] == 4
    assert container["resources"]["limits"] == {"memory": "4Gi"}
    # The patch added an env var and kept the base's.
    names = [e["name"] for e in container["env"]]
    assert {"KPIWATCH_KPI_SERIES_CAP", "KPIWATCH_INSTANCE_ID", "KPIWATCH_RULES"} <= set(names)
    assert sorted(one(overlay, "ConfigMap", "kpiwatch-rules")["data"]) == [
        "ads-team.yaml",
        "default.yaml",
    ]


def test_base_rules_are_the_shipped_default_rules() -> None:
    shipped = (DEPLOY.parent / "rules" / "library" / "default.yaml").read_text()
    assert (K8S / "base" / "files" / "default.yaml").read_text() == shipped, (
        "copy rules/library/default.yaml to deploy/k8s/base/files/ (Kustomize reads no file "
        "outside its folder)"
    )
