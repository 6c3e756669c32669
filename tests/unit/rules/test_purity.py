"""The rules package stays pure: no I/O library and nothing from the outer packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rules

RULES_DIR = Path(rules.__file__).parent
FORBIDDEN = {
    "faust",
    "aiokafka",
    "kafka",
    "redis",
    "httpx",
    "aiohttp",
    "requests",
    "socket",
    "streams",
    "sinks",
    "connectors",
}
MODULES = sorted(RULES_DIR.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_rules_package_has_modules_to_check() -> None:
    assert {p.name for p in MODULES} >= {"schema.py", "load.py", "evaluate.py", "lifecycle.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_rules_module_imports_no_io_or_outer_package(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()


def test_the_import_scan_sees_from_and_plain_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import socket\nimport redis.asyncio as r\nfrom streams.kpi import x\n"
        "from . import schema\ndef f():\n    import httpx\n",
        "utf-8",
    )
    assert imported_roots(sample) == {"socket", "redis", "streams", "httpx"}
