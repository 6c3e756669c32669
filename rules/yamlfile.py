"""YAML configuration files with every problem at once and the line of each: the shared part
of loading rule files and sink files (ruamel's round-trip loader keeps each key's line)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError

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
        raise ConfigError([_syntax_problem(exc, source)]) from exc
    except ReaderError as exc:
        # A character YAML does not allow (NUL, an escape); the reader knows only its offset.
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problem = f"not valid YAML: the character {code:#06x} is not allowed in a YAML file"
        raise ConfigError([Problem(source, line, problem)]) from exc
    if document is None:
        raise ConfigError([Problem(source, None, f"the file is empty; expected '{top_key}:'")])
    return document


def _syntax_problem(exc: MarkedYAMLError, source: str) -> Problem:
    """The line at fault (a bad indent on line 6), not where its enclosing block began; but
    where the parser only gave up at the end of the file (an unclosed quote), the line where
    the broken construct started."""
    problem, context = exc.problem_mark, exc.context_mark
    at_end = problem is None or "end of stream" in str(exc.problem)
    mark = context if at_end and context is not None else problem
    line = mark.line + 1 if mark is not None else None
    if not exc.context:
        return Problem(source, line, f"not valid YAML: {exc.problem}")
    if mark is context or context is None:
        return Problem(source, line, f"not valid YAML: {exc.context}, {exc.problem}")
    # The parser's context ("while parsing a block mapping") points at the block's start.
    block = exc.context.removeprefix("while parsing ").removeprefix("a ")
    what = f"{exc.problem} (in the {block} that starts on line {context.line + 1})"
    if "<block end>" in str(exc.problem):
        what += "; check this line's indentation"
    return Problem(source, line, f"not valid YAML: {what}")


def read_text(path: Path) -> str:
    """A configuration file's text; what keeps it from being read (a missing file, bytes that
    are not UTF-8, with the line of the first) as a ConfigError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, f"cannot read: {exc.strerror}")]) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte {data[exc.start]:#04x}); save the file as UTF-8"
        raise ConfigError([Problem(str(path), line, message)]) from exc


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
            # A tagged sequence (`!!python/tuple [a, b]`) keeps no position per item.
            position = node.lc.item(part)
            if position is None:
                break
            line = position[0] + 1
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
