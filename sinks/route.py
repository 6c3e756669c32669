"""The routing tree, compiled: which sinks, with which grouping and language, get an alert.

Semantics are Alertmanager's: the root matches everything; an alert descends into the first
child that matches, and on into further siblings only while the matched child says `continue`;
a node none of whose children match handles the alert itself. Inheritance of `group_by`,
`group_wait`, `group_interval`, `language`, `mention` and `sinks` is resolved once, here, at
load time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from rules.alerts import Alert
from sinks.config import Mention, RouteConfig
from sinks.render import Language

DEFAULT_GROUP_BY: Final = ("rule",)
DEFAULT_GROUP_WAIT: Final = 30.0
DEFAULT_GROUP_INTERVAL: Final = 300.0


@dataclass(frozen=True)
class Route:
    """A compiled node; `id` is its path in the tree ("0.2.1"), stable while the file is."""

    id: str
    match: tuple[tuple[str, str], ...]
    match_re: tuple[tuple[str, re.Pattern[str]], ...]
    sinks: tuple[str, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    language: Language | None
    routes: tuple[Route, ...]
    mention: Mention | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match) and all(
            p.fullmatch(labels.get(k, "")) is not None for k, p in self.match_re
        )


def compile_route(config: RouteConfig | None, default_sinks: tuple[str, ...]) -> Route:
    """The tree from the file; without a `route:` every alert goes to every sink."""
    root = config or RouteConfig(sinks=list(default_sinks))
    parent = Route(
        "0", (), (), default_sinks, False, DEFAULT_GROUP_BY,
        DEFAULT_GROUP_WAIT, DEFAULT_GROUP_INTERVAL, None, (),
    )  # fmt: skip
    return _compile(root, parent, "0")


def _compile(config: RouteConfig, parent: Route, id_: str) -> Route:
    node = Route(
        id=id_,
        match=tuple(sorted(config.match.items())),
        match_re=tuple((k, re.compile(v)) for k, v in sorted(config.match_re.items())),
        sinks=tuple(config.sinks) or parent.sinks,
        continue_=config.continue_,
        group_by=tuple(config.group_by) if config.group_by is not None else parent.group_by,
        group_wait=_or(config.group_wait, parent.group_wait),
        group_interval=_or(config.group_interval, parent.group_interval),
        language=config.language or parent.language,
        routes=(),
        mention=config.mention or parent.mention,
    )
    children = tuple(_compile(c, node, f"{id_}.{i}") for i, c in enumerate(config.routes))
    return Route(**{**node.__dict__, "routes": children})


def _or(value: float | None, inherited: float) -> float:
    return inherited if value is None else value


def find_route(node: Route, id_: str) -> Route | None:
    """The node with this id (a lane's name carries it when the route has its own mentions)."""
    if node.id == id_:
        return node
    for child in node.routes:
        if id_.startswith(child.id):
            found = find_route(child, id_)
            if found is not None:
                return found
    return None


def route_labels(alert: Alert) -> dict[str, str]:
    """What routes and silences match on: the scope labels plus the rule's own identity."""
    return {**alert.labels, "rule": alert.rule, "severity": alert.severity, "kpi": alert.kpi}


def routes_for(root: Route, labels: Mapping[str, str]) -> list[Route]:
    """The nodes that handle an alert with these labels (at least one: the root is the fallback)."""
    return _walk(root, labels) or [root]


def _walk(node: Route, labels: Mapping[str, str]) -> list[Route]:
    if not node.matches(labels):
        return []
    found: list[Route] = []
    for child in node.routes:
        matched = _walk(child, labels)
        found.extend(matched)
        if matched and not child.continue_:
            break
    return found or [node]
