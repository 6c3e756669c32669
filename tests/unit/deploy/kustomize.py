"""The part of Kustomize that deploy/k8s uses, in Python, so CI renders the overlay without
kubectl: resources (files and kustomization folders), configMapGenerator (files, literals,
behavior create/merge/replace, no name hashes), namespace, images, replicas, and patches as
strategic merge patches (maps merged; lists of named items, such as containers, env, ports and
volumes, merged by name; other lists replaced). Anything else in a kustomization is refused
rather than ignored, so that this copy cannot silently drift from what `kubectl apply -k` does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

Resource = dict[str, Any]
KNOWN = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "namespace",
    "images",
    "replicas",
    "patches",
}
CLUSTER_SCOPED = {"Namespace"}


def load_all(path: Path) -> list[Resource]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def build(folder: Path) -> list[Resource]:
    kustomization: dict[str, Any] = YAML(typ="safe").load(
        (folder / "kustomization.yaml").read_text()
    )
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise ValueError(f"{folder}: kustomization fields this renderer lacks: {unknown}")
    creates = [g for g in kustomization.get("configMapGenerator", []) if g.get("behavior") is None]
    options = kustomization.get("generatorOptions")
    if creates and options != {"disableNameSuffixHash": True}:
        raise ValueError(f"{folder}: name hashes are not rendered; disable them")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        target = folder / entry
        resources.extend(build(target) if target.is_dir() else load_all(target))
    for generator in kustomization.get("configMapGenerator", []):
        _generate(folder, generator, resources)
    for patch in kustomization.get("patches", []):
        for document in load_all(folder / patch["path"]):
            target = _find(resources, document["kind"], document["metadata"]["name"])
            merged = merge(target, document)
            target.clear()
            target.update(merged)
    for image in kustomization.get("images", []):
        for container in _containers(resources):
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    for replicas in kustomization.get("replicas", []):
        for resource in resources:
            if resource["metadata"]["name"] == replicas["name"] and "replicas" in resource.get(
                "spec", {}
            ):
                resource["spec"]["replicas"] = replicas["count"]
    namespace = kustomization.get("namespace")
    if namespace is not None:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace
    return resources


def _generate(folder: Path, generator: dict[str, Any], resources: list[Resource]) -> None:
    data: dict[str, str] = {}
    for item in generator.get("literals", []):
        key, _, value = item.partition("=")
        data[key] = value
    for item in generator.get("files", []):
        key, _, path = item.rpartition("=")
        data[key or Path(path).name] = (folder / path).read_text()
    behavior = generator.get("behavior", "create")
    if behavior == "create":
        resources.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
        return
    existing = _find(resources, "ConfigMap", generator["name"])
    if behavior == "replace":
        existing["data"] = data
    elif behavior == "merge":
        existing["data"] = {**existing.get("data", {}), **data}
    else:
        raise ValueError(f"unknown configMapGenerator behavior {behavior!r}")


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge patch, for what deploy/k8s patches hold (checked once against
    `kubectl kustomize` 1.32 / Kustomize 5.5 on deploy/k8s/overlays/example: same output)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        # As kubectl's: items new to the list come first, in the patch's order.
        merged_list = copy.deepcopy(base)
        added = []
        for item in patch:
            index = next((n for n, old in enumerate(base) if old["name"] == item["name"]), None)
            if index is None:
                added.append(copy.deepcopy(item))
            else:
                merged_list[index] = merge(base[index], item)
        return added + merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def _find(resources: list[Resource], kind: str, name: str) -> Resource:
    for resource in resources:
        if resource["kind"] == kind and resource["metadata"]["name"] == name:
            return resource
    raise ValueError(f"no {kind} {name!r} to patch or merge into")


def _containers(resources: list[Resource]) -> list[dict[str, Any]]:
    found = []
    for resource in resources:
        spec = resource.get("spec", {}).get("template", {}).get("spec", {})
        found.extend(spec.get("containers", []))
        found.extend(spec.get("initContainers", []))
    return found
