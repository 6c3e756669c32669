"""YAML configuration files with every problem at once and the line of each: the shared part
of loading rule files and sink files (ruamel's round-trip loader keeps each key's line)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import ScalarNode

from rules.errors import ConfigError, Problem


def problems_of(
    exc: ValidationError, document: Any, prefix: tuple[int | str, ...], source: str
) -> list[Problem]:
    return [
        Problem(source, line_of(document, (*prefix, *error["loc"])), message_of(error))
        for error in exc.errors(include_url=False)
    ]


class _Constructor(RoundTripConstructor):
    """Dates stay text: the models parse them with messages of their own, where ruamel would
    crash on 2026-02-30 with a bare ValueError and no line."""

    def construct_yaml_timestamp(self, node: ScalarNode, values: Any = None) -> Any:
        return self.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


def parse_yaml(text: str, source: str, top_key: str = "rules") -> Any:
    loader = YAML(typ="rt")
    loader.Constructor = _Constructor
    try:
        document = loader.load(text)
    except MarkedYAMLError as exc:
        # Where the broken construct started (an unclosed quote) beats where the parser gave up
        # (often the end of the file).
        mark = exc.context_mark or exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        what = f"{exc.context}, {exc.problem}" if exc.context else str(exc.problem)
        raise ConfigError([Problem(source, line, f"not valid YAML: {what}")]) from exc
    if document is None:
        raise ConfigError([Problem(source, None, f"the file is empty; expected '{top_key}:'")])
    return document


def plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists, for pydantic."""
    if isinstance(node, dict):
        return {str(key): plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(item) for item in node]
    return node


def line_of(document: Any, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest part of `loc` that the YAML document has."""
    node, line = document, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(document, CommentedMap):
        line = document.lc.line + 1
    return line


def message_of(error: Any) -> str:
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[-1] == "[key]":  # a mapping key that is not allowed, e.g. thresholds: severe:
        parent = loc[-3] if len(loc) >= 3 else "file"
        return (
            f"{parent}: {error['input']!r} is not allowed here; {message[0].lower()}{message[1:]}"
        )
    field = loc[-1] if loc else "file"
    if error["type"] == "extra_forbidden":
        return f"unknown key {field!r}"
    if error["type"] == "missing":
        return f"missing required key {field!r}"
    return f"{field}: {message}"
