"""deploy/docker: the Dockerfile passes hadolint, and the lock it installs from pins every
runtime dependency of pyproject.toml within its range. No image is built here (no Docker)."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from unit.deploy.support import DEPLOY, REPO, run

DOCKER = DEPLOY / "docker"


def lock() -> dict[str, str]:
    pins = {}
    for line in (DOCKER / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_dockerfile_passes_hadolint() -> None:
    result = run("hadolint", "--failure-threshold", "info", str(DOCKER / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run deploy/docker/lock.py"
        assert requirement.specifier.contains(pins[name]), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}: "
            "run deploy/docker/lock.py"
        )
    dev = {canonicalize_name(Requirement(t).name) for t in project["optional-dependencies"]["dev"]}
    assert not dev & pins.keys() - {"packaging"}, "dev tools do not belong in the image"


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.MULTILINE)
    sources = [source for line in copied for source in line.split()[:-1]]
    assert "README.md" in sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing"
        assert source.rstrip("/") in allowed, f"COPY {source}: left out by the .dockerignore"
