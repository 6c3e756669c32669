"""Load a sinks file: YAML -> validated configs with secrets resolved, every problem at once.

Reuses the rule loader's YAML helpers so both files report problems the same way (file:line).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rules.errors import ConfigError, Problem
from rules.fileconfig import unresolved
from rules.yamlfile import line_of, parse_yaml, plain, problems_of, read_text
from sinks.config import (
    CONFIG_MODELS,
    Delivery,
    LinksConfig,
    RouteConfig,
    ScheduleConfig,
    SinkBase,
    SinksFile,
)
from sinks.registry import SINK_TYPES
from sinks.route import Route, compile_route


@dataclass(frozen=True)
class SinksSetup:
    """Everything a sinks file says: the sinks, the compiled routing tree, delivery settings."""

    sinks: list[SinkBase]
    route: Route
    delivery: Delivery
    links: LinksConfig | None = None
    schedules: tuple[ScheduleConfig, ...] = ()


def load_path(path: Path, environ: Mapping[str, str] | None = None) -> list[SinkBase]:
    return load_setup_path(path, environ).sinks


def load_text(text: str, source: str, environ: Mapping[str, str] | None = None) -> list[SinkBase]:
    return load_setup_text(text, source, environ).sinks


def load_setup_path(path: Path, environ: Mapping[str, str] | None = None) -> SinksSetup:
    return load_setup_text(read_text(path), str(path), environ)


def load_setup_text(text: str, source: str, environ: Mapping[str, str] | None = None) -> SinksSetup:
    """Validate every sink and the route, resolve every secret; raise ConfigError listing all
    problems."""
    document = parse_yaml(text, source, top_key="sinks")
    problems: list[Problem] = []
    shell = _shell(document, source, problems)
    configs: dict[int, SinkBase] = {}
    for index, raw in enumerate(_sink_items(document, source, problems)):
        config = _validate(raw, document, index, source, problems)
        if config is not None:
            problems.extend(_resolve(config, document, index, source, environ or os.environ))
            configs[index] = config
    problems.extend(_duplicates(configs, document, source))
    names = [c.name for c in configs.values()]
    route = shell.route if shell is not None else None
    if route is not None:
        problems.extend(_unknown_sinks(route, set(names), document, source))
    if shell is not None:
        problems.extend(_schedule_sinks(shell, set(names), document, source))
    if shell is not None and shell.links is not None:
        problems.extend(_resolve_links(shell.links, document, source, environ or os.environ))
    if problems or shell is None:
        raise ConfigError(problems)
    route_tree = compile_route(route, tuple(names))
    return SinksSetup(
        list(configs.values()), route_tree, shell.delivery, shell.links, tuple(shell.schedules)
    )


def _schedule_sinks(shell: SinksFile, names: set[str], document: Any, source: str) -> list[Problem]:
    known = ", ".join(sorted(names)) or "none"
    return [
        Problem(
            source,
            line_of(document, ("schedules", index, "sinks", at)),
            f"schedules: {schedule.name}: no sink named {name!r} (known: {known})",
        )
        for index, schedule in enumerate(shell.schedules)
        for at, name in enumerate(schedule.sinks)
        if name not in names
    ]


def _resolve_links(
    links: LinksConfig, document: Any, source: str, environ: Mapping[str, str]
) -> list[Problem]:
    return [
        Problem(source, line_of(document, where), f"{'.'.join(map(str, where))}: {missing}")
        for where, missing in unresolved(links, environ, ("links",))
    ]


def _shell(document: Any, source: str, problems: list[Problem]) -> SinksFile | None:
    """The file without its sinks (each sink is validated alone, to get its own problems)."""
    shell = plain(document)
    if isinstance(shell, dict) and "sinks" in shell:
        shell["sinks"] = []
    try:
        return SinksFile.model_validate(shell)
    except ValidationError as exc:
        problems.extend(problems_of(exc, document, (), source))
        return None


def _unknown_sinks(
    route: RouteConfig, names: set[str], document: Any, source: str
) -> list[Problem]:
    known = ", ".join(sorted(names)) or "none"
    return [
        Problem(source, line_of(document, where), f"route: no sink named {name!r} (known: {known})")
        for where, name in _route_sinks(route, ("route",))
        if name not in names
    ]


def _route_sinks(
    route: RouteConfig, where: tuple[int | str, ...]
) -> Iterator[tuple[tuple[int | str, ...], str]]:
    for index, name in enumerate(route.sinks):
        yield (*where, "sinks", index), name
    for index, child in enumerate(route.routes):
        yield from _route_sinks(child, (*where, "routes", index))


def _sink_items(document: Any, source: str, problems: list[Problem]) -> list[Any]:
    if not isinstance(document, dict) or "sinks" not in document:
        return []  # the shell's problems already say so
    sinks = document.get("sinks")
    if not isinstance(sinks, list):
        line = line_of(document, ("sinks",))
        problems.append(
            Problem(source, line, "sinks: expected a list, each item starting '- name:'")
        )
        return []
    return [plain(sink) for sink in sinks]


def _validate(
    raw: Any, document: Any, index: int, source: str, problems: list[Problem]
) -> SinkBase | None:
    where = ("sinks", index)
    type_ = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or "type" not in raw:
        problems.append(Problem(source, line_of(document, where), "missing required key 'type'"))
        return None
    model = CONFIG_MODELS.get(str(type_))
    if model is None or type_ not in SINK_TYPES:
        known = ", ".join(sorted(SINK_TYPES))
        line = line_of(document, (*where, "type"))
        problems.append(
            Problem(source, line, f"type: unknown sink type {type_!r} (known: {known})")
        )
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(problems_of(exc, document, where, source))
        return None


def _resolve(
    config: SinkBase, document: Any, index: int, source: str, environ: Mapping[str, str]
) -> list[Problem]:
    return [
        Problem(
            source,
            line_of(document, where),
            f"sink {config.name!r}: {'.'.join(str(p) for p in where[2:])}: {missing}",
        )
        for where, missing in unresolved(config, environ, ("sinks", index))
    ]


def _duplicates(configs: dict[int, SinkBase], document: Any, source: str) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for index, config in configs.items():
        line = line_of(document, ("sinks", index, "name"))
        if config.name in seen:
            first = f"{source}:{seen[config.name]}"
            problems.append(
                Problem(source, line, f"sink name {config.name!r} is already used at {first}")
            )
        seen.setdefault(config.name, line or 0)
    return problems
