"""Guarantee 6, bad configuration: broken rule files, sinks files and connect files are refused
with `file:line: message` for every problem, never with a traceback.

The broken files are the shipped ones (rules/library/*.yaml, deploy/kpiwatch/*.example.yaml)
with one mistake each, drawn by hypothesis (`@seed(SEED)`, no example database: the same files
on every run; a failure prints the mutation, which hypothesis first shrinks to the simplest one
it can find): a wrong type, an unknown key, a bad duration, a YAML syntax error (unclosed quote
or bracket, a tab, a duplicate key, an undefined alias, a control character, bytes that are not
UTF-8), an undefined or literal secret, an unknown calendar. Each is loaded by the loader the
command uses (`rules.load.load_paths` for `kpiwatch rules check` and the worker's rules,
`sinks.load.load_setup_path` for KPIWATCH_SINKS_FILE, `streams.connect.load_section` for
`kpiwatch connect`), which must raise ConfigError, every problem with the file and a line, one
of them the line of the mistake; anything else escapes as the test's failure. A representative
subset runs the real commands in subprocesses: exit status 2, the problems on stderr as
`file:line: message`, no traceback. The hot-reload case (a broken file keeps the last good rules
running) is tests/integration/test_rules_reload.py.
"""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from integration.support import REPO
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from rules.errors import ConfigError
from rules.load import load_paths
from sinks.load import load_setup_path
from streams.connect import load_section
from streams.sourcenames import SECTIONS

pytestmark = pytest.mark.faults

SEED: Final = 20261126
# Broken files per kind of file (each load takes 5-40 ms).
EXAMPLES: Final[dict[str, int]] = {"rules": 360, "sinks": 180, "connect": 180}
LIBRARY: Final = REPO / "rules" / "library"
# The rule files (scorecards live in their own files and have their own loader).
RULE_FILES: Final = ("ads", "calendars", "default", "feeds", "inventory", "sales", "targets")
# Files whose rules mute with or watch during the calendars of calendars.yaml.
NEEDS_CALENDARS: Final = frozenset({"ads", "feeds", "sales"})
SINKS_EXAMPLE: Final = REPO / "deploy" / "kpiwatch" / "sinks.example.yaml"
CONNECT_EXAMPLE: Final = REPO / "deploy" / "kpiwatch" / "connect.example.yaml"
# What the example files' secrets read: none of these values may show in a problem.
SECRETS: Final[dict[str, str]] = {
    "OPS_DINGTALK_URL": "https://oapi.dingtalk.com/robot/send?access_token=dt-token-7f3a",
    "OPS_DINGTALK_SECRET": "SECdingtalk-signing-5b1e",
    "ADS_FEISHU_URL": "https://open.feishu.cn/open-apis/bot/v2/hook/fs-hook-9c2d",
    "ADS_FEISHU_SECRET": "feishu-signing-0d4c",
    "KPIWATCH_LWA_CLIENT_SECRET": "amzn1.oa2-cs.v1.lwa-secret-e8a1",
    "KPIWATCH_SP_REFRESH_TOKEN_US01": "Atzr|sp-refresh-3c7f",
    "KPIWATCH_ADS_REFRESH_TOKEN": "Atzr|ads-refresh-6b2e",
    "KPIWATCH_FIREHOSE_ACCESS_KEY": "firehose-key-1f9d",
    "KPIWATCH_SHOPEE_REFRESH_TOKEN_MY01": "shopee-refresh-4a8b",
    "KPIWATCH_SHOPIFY_WEBHOOK_SECRET": "shpss_webhook-2e6f",
    "KPIWATCH_TIKTOK_APP_SECRET": "tiktok-app-secret-8d3a",
    "KPIWATCH_TIKTOK_REFRESH_TOKEN_US01": "tiktok-refresh-5c1b",
}
SHOPEE_KEY: Final = "shopee-partner-key-7e2c"
# Keys whose mappings take names of the author's choosing: a new key there is no mistake.
FREE_FORM: Final = frozenset(
    {"labels", "match", "match_re", "filters", "calendars", "refresh_tokens", "inventory_skus",
     "message", "shops"}
)  # fmt: skip
DURATIONS: Final = frozenset(
    {"for", "repeat", "after", "group_wait", "group_interval", "base_delay", "max_delay",
     "dedupe_window", "poll_interval", "per"}
)  # fmt: skip
BAD_DURATIONS: Final = (
    "soon",
    "5 parsecs",
    "-5m",
    "1h30",
    "5mm",
    "1.5.2s",
    "10 minutes",
    "∞",
    "99999999999999999999d",
    "0x10s",
    "PT5M",
    "1e3s",
)
# What a problem must never read like: an object's repr or the inside of the YAML library.
NOT_FOR_PEOPLE: Final = re.compile(r"object at 0x|Commented(Map|Seq)|TaggedScalar|ruamel")


# --- Where a file can be broken -------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A key that starts its own line: where it is, and its value."""

    line: int  # 1-based
    col: int
    path: tuple[str | int, ...]
    value: Any
    inline: bool  # the whole value is on the key's line
    siblings: frozenset[str]  # the other keys of its mapping
    parent_line: int  # where its mapping is (a missing key is reported there)

    @property
    def key(self) -> str:
        return str(self.path[-1])

    @property
    def parent(self) -> str:
        names = [p for p in self.path[:-1] if isinstance(p, str)]
        return names[-1] if names else ""


def sites_of(text: str) -> list[Site]:
    document = YAML(typ="rt").load(text)
    lines = text.splitlines()
    found: list[Site] = []

    def walk(node: Any, path: tuple[str | int, ...], parent_line: int) -> None:
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                line, col = node.lc.key(key)
                owns = lines[line][:col].strip() in ("", "-")
                if owns:
                    inline = _inline(lines[line], value, node.lc.value(key)[0] == line)
                    siblings = frozenset(str(k) for k in node) - {str(key)}
                    where = (*path, str(key))
                    found.append(Site(line + 1, col, where, value, inline, siblings, parent_line))
                walk(value, (*path, str(key)), line + 1)
        elif isinstance(node, CommentedSeq):
            for index, item in enumerate(node):
                walk(item, (*path, index), node.lc.item(index)[0] + 1)

    walk(document, (), 1)
    return found


def _inline(text: str, value: Any, same_line: bool) -> bool:
    """The value is wholly on the key's line (a scalar or a flow collection closed there)."""
    if not same_line or (isinstance(value, str) and "\n" in value):
        return False
    code = text.split(" #", 1)[0]
    return code.count("[") == code.count("]") and code.count("{") == code.count("}")


def with_value(text: str, site: Site, value: str) -> str:
    """`text` with the value on `site`'s line replaced (its comment goes too)."""
    lines = text.splitlines(keepends=True)
    line = lines[site.line - 1]
    colon = line.index(":", site.col + len(site.key))
    lines[site.line - 1] = f"{line[: colon + 1]} {value}\n"
    return "".join(lines)


def with_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[number - 1] = new
    return "".join(lines)


# --- The files and their loaders ------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """One broken copy of a shipped file: what kind of mistake, in which file, on which line,
    and the lines a problem may name for it (`low`..`high`, default: that line)."""

    kind: str
    file: str  # the shipped file's name
    line: int
    text: str | bytes
    low: int = 0
    high: int = 0
    how: str = ""  # the variant of the mistake, where there are several

    def at(self, line: int) -> bool:
        return (self.low or self.line) <= line <= (self.high or self.line)

    def __repr__(self) -> str:
        return f"Broken({self.kind}, {self.file}:{self.line})\n{_excerpt(self)}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # How hypothesis prints a failing example: the lines around the mistake, not the file.
        printer.text(repr(self))


def _excerpt(broken: Broken) -> str:
    text = broken.text if isinstance(broken.text, str) else broken.text.decode(errors="replace")
    lines = text.splitlines()
    low, high = max(0, broken.line - 3), min(len(lines), broken.line + 2)
    return "\n".join(f"{n + 1:4} {lines[n]}" for n in range(low, high))


@cache
def shipped(name: str) -> str:
    if name == "sinks":
        return SINKS_EXAMPLE.read_text(encoding="utf-8")
    if name == "connect":
        return CONNECT_EXAMPLE.read_text(encoding="utf-8")
    return (LIBRARY / f"{name}.yaml").read_text(encoding="utf-8")


@cache
def sites(name: str) -> tuple[Site, ...]:
    return tuple(sites_of(shipped(name)))


def environ(folder: Path) -> dict[str, str]:
    key = folder / "shopee_partner_key"
    key.write_text(SHOPEE_KEY)
    return {**SECRETS, "SHOPEE_KEY_FILE": str(key)}


def connect_text(text: str, folder: Path) -> str:
    """The shipped connect file reads Shopee's partner key from /run/secrets: here, a file."""
    return text.replace("/run/secrets/shopee_partner_key", str(folder / "shopee_partner_key"))


def load(broken: Broken, folder: Path) -> tuple[Path, ConfigError | None]:
    """Write the broken file and load it as its command would; returns the file and the
    ConfigError (None: it loaded)."""
    suffix = {"sinks": "sinks.yaml", "connect": "connect.yaml"}.get(broken.file)
    path = folder / (suffix or f"{broken.file}.yaml")
    data = broken.text if isinstance(broken.text, bytes) else broken.text.encode()
    path.write_bytes(data)
    try:
        if broken.file == "sinks":
            load_setup_path(path, environ(folder))
        elif broken.file == "connect":
            load_section(path, source_of(broken), environ(folder))
        else:
            paths = [path]
            if broken.file in NEEDS_CALENDARS:
                (folder / "calendars.yaml").write_text(shipped("calendars"), encoding="utf-8")
                paths.append(folder / "calendars.yaml")
            load_paths(paths)
    except ConfigError as exc:
        return path, exc
    return path, None


def source_of(broken: Broken) -> str:
    """The connect source whose section holds the broken line."""
    text = broken.text if isinstance(broken.text, str) else broken.text.decode(errors="replace")
    lines = text.splitlines()[: broken.line]
    for line in reversed(lines):
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            section = line.split(":", 1)[0].strip()
            return next((name for name, key in SECTIONS.items() if key == section), "amazon-sp")
    return "amazon-sp"


def check(broken: Broken, path: Path, error: ConfigError | None) -> None:
    """The guarantee for one broken file: refused, every problem `file:line: message` and
    readable, one of them where the mistake is, no secret value in any of them."""
    assert error is not None, f"accepted: {broken!r}"
    assert error.problems, f"a ConfigError without problems: {broken!r}"
    for problem in error.problems:
        text = str(problem)
        assert problem.line is not None, f"no line: {text}\n{broken!r}"
        assert problem.line >= 1, text
        assert text.startswith(f"{problem.file}:{problem.line}: "), text
        assert problem.message.strip(), repr(text)
        assert "\n" not in problem.message, repr(text)
        assert not NOT_FOR_PEOPLE.search(problem.message), f"{text}\n{broken!r}"
        for secret in (*SECRETS.values(), SHOPEE_KEY):
            assert secret not in text, f"a secret in {text!r}"
    here = [p for p in error.problems if p.file == str(path)]
    assert any(broken.at(p.line or 0) for p in here), (
        f"no problem at line {broken.line}: {[str(p) for p in error.problems]}\n{broken!r}"
    )


# --- The mistakes ---------------------------------------------------------------------------


def pick(draw: st.DrawFn, name: str, keep: Callable[[Site], bool]) -> Site:
    return draw(st.sampled_from([site for site in sites(name) if keep(site)]))


@st.composite
def wrong_type(draw: st.DrawFn, name: str) -> Broken:
    site = pick(draw, name, lambda s: s.inline)
    value = draw(st.sampled_from(["{bogus: [1]}", "[[1, 2]]"]))
    broken = with_value(shipped(name), site, value)
    return Broken("wrong-type", name, site.line, broken, *where(site))


def where(site: Site) -> tuple[int, int]:
    """The lines a problem may name for a mistake on `site`: its own, or its mapping's (where
    a misspelt required key is reported missing); for a key in `defaults:`, any line after it
    (the loader reports the mistake at each rule that inherits it, not at `defaults:`)."""
    if site.path[:1] == ("defaults",):
        return site.line, 10**6
    return site.parent_line, site.line


@st.composite
def unknown_key(draw: st.DrawFn, name: str) -> Broken:
    site = pick(draw, name, lambda s: s.parent not in FREE_FORM)
    typo = draw(
        st.sampled_from(
            [
                site.key + "s",
                site.key + "x",
                site.key.upper(),
                site.key[:-1] if len(site.key) > 1 else site.key + "y",
                site.key.replace("_", "-") if "_" in site.key else "x" + site.key,
            ]
        )
    )
    lines = shipped(name).splitlines(keepends=True)
    line = lines[site.line - 1]
    lines[site.line - 1] = line[: site.col] + typo + line[site.col + len(site.key) :]
    return Broken("unknown-key", name, site.line, "".join(lines), *where(site))


@st.composite
def bad_duration(draw: st.DrawFn, name: str) -> Broken:
    site = pick(draw, name, lambda s: s.key in DURATIONS and s.inline)
    value = draw(st.sampled_from(BAD_DURATIONS))
    broken = with_value(shipped(name), site, value)
    return Broken("bad-duration", name, site.line, broken, *where(site))


SYNTAX: Final = (
    "unclosed-quote",
    "unclosed-bracket",
    "colon-in-value",
    "tab",
    "duplicate-key",
    "undefined-alias",
    "python-tag",
    "control-character",
    "not-utf8",
)


@st.composite
def yaml_syntax(draw: st.DrawFn, name: str) -> Broken:
    how = draw(st.sampled_from(SYNTAX))
    text = shipped(name)
    if how == "tab":
        site = pick(draw, name, lambda s: s.col > 0 and s.inline)
        line = text.splitlines(keepends=True)[site.line - 1]
        broken = with_line(text, site.line, "\t" + line)
        return Broken("yaml-syntax", name, site.line, broken, how=how)
    site = pick(draw, name, lambda s: s.inline and not isinstance(s.value, CommentedMap))
    if how == "duplicate-key":
        line = text.splitlines(keepends=True)[site.line - 1]
        # A list item's first key is repeated on the next line, without the dash.
        twice = line + " " * site.col + line[site.col :]
        broken = with_line(text, site.line, twice)
        return Broken("yaml-syntax", name, site.line + 1, broken, site.line, how=how)
    value = {
        "unclosed-quote": f'"{site.value}',
        "unclosed-bracket": f"[{site.value}, more",
        "colon-in-value": f"{site.value}: oops",
        "undefined-alias": "*nowhere",
        # Nothing runs (the round-trip loader builds no Python objects); the value under the
        # tag is wrong whatever the key, so the file must be refused.
        "python-tag": "!!python/object/apply:os.system [{bogus: 1}]",
        "control-character": f"{site.value}\x00\x1b[2J",
        "not-utf8": "__BYTES__",
    }[how]
    broken = with_value(text, site, value)
    if how == "not-utf8":
        encoded = "商品".encode(draw(st.sampled_from(["gbk", "shift_jis", "utf-16-le"])))
        data = broken.encode().replace(b"__BYTES__", encoded)
        return Broken("yaml-syntax", name, site.line, data, how=how)
    if how in ("unclosed-quote", "unclosed-bracket"):
        # What follows is read as part of the string or list, up to the next quote or bracket:
        # the parser notices where that ends (the report names the broken line where it can).
        return Broken("yaml-syntax", name, site.line, broken, site.line, 10**6, how)
    return Broken("yaml-syntax", name, site.line, broken, how=how)


@st.composite
def bad_secret(draw: st.DrawFn, name: str) -> Broken:
    site = pick(
        draw, name, lambda s: isinstance(s.value, CommentedMap) and set(s.value) <= {"env", "file"}
    )
    unset = draw(st.text(alphabet=string.ascii_uppercase + "_", min_size=3, max_size=12))
    how, value = draw(
        st.sampled_from(
            [
                ("unset", f"{{env: KPIWATCH_UNSET_{unset}}}"),
                ("no-file", f"{{file: /nonexistent/{unset.lower()}}}"),
                ("empty", "{env: ''}"),
                ("neither", "{}"),
                ("both", f"{{env: KPIWATCH_UNSET_{unset}, file: /nonexistent/x}}"),
                ("literal", f"literal-{SECRETS['OPS_DINGTALK_SECRET']}"),
                ("number", "123456"),
            ]
        )
    )
    broken = with_value(shipped(name), site, value)
    return Broken("bad-secret", name, site.line, broken, *where(site), how)


_calendar_name = st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=16)


@st.composite
def unknown_calendar(draw: st.DrawFn, name: str) -> Broken:
    known = set(YAML(typ="safe").load(shipped("calendars"))["calendars"])
    unknown = draw(_calendar_name.filter(lambda c: c not in known))
    text = shipped(name)
    site = pick(draw, name, lambda s: s.key in ("mute", "during") or _mutes_nothing(s))
    if site.key == "mute":
        broken = with_value(text, site, f"[{unknown}]")
        return Broken("unknown-calendar", name, site.line, broken, *where(site))
    if site.key == "during":  # reported on its rule's `no_data:` line
        broken = with_value(text, site, unknown)
        return Broken("unknown-calendar", name, site.line, broken, *where(site))
    # A rule that mutes nothing yet: give it a calendar nobody defined, after its name.
    lines = text.splitlines(keepends=True)
    lines.insert(site.line, f"{' ' * site.col}mute: [{unknown}]\n")
    return Broken("unknown-calendar", name, site.line + 1, "".join(lines))


def _rules_file(name: str) -> bool:
    return any(s.path[:1] == ("rules",) and s.key == "name" for s in sites(name))


def _mutes_nothing(site: Site) -> bool:
    """A rule's name, in a rule that has no `mute:` of its own (one added after the name is
    then no duplicate key)."""
    return site.path[:1] == ("rules",) and site.key == "name" and "mute" not in site.siblings


MISTAKES: Final[dict[str, Callable[[str], st.SearchStrategy[Broken]]]] = {
    "wrong-type": wrong_type,
    "unknown-key": unknown_key,
    "bad-duration": bad_duration,
    "yaml-syntax": yaml_syntax,
    "bad-secret": bad_secret,
    "unknown-calendar": unknown_calendar,
}


def applicable(mistake: str, name: str) -> bool:
    """Whether the shipped file has a place for this mistake."""
    if mistake == "bad-duration":
        return any(s.key in DURATIONS and s.inline for s in sites(name))
    if mistake == "bad-secret":
        return name in ("sinks", "connect")
    if mistake == "unknown-calendar":
        return name not in ("sinks", "connect") and _rules_file(name)
    return True


def broken_files(kind: str) -> st.SearchStrategy[Broken]:
    """Any broken file of `kind` (rules, sinks, connect)."""
    names = RULE_FILES if kind == "rules" else (kind,)
    return st.one_of(
        [
            strategy(name)
            for mistake, strategy in MISTAKES.items()
            for name in names
            if applicable(mistake, name)
        ]
    )


def examples(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The hypothesis settings every bulk test shares (see the module docstring)."""
    count = EXAMPLES[kind]

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        return seed(SEED)(
            settings(
                max_examples=count,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )(given(broken=broken_files(kind))(test))
        )

    return decorate


# --- The tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kpiwatch-bad-config-") as name:
        yield Path(name)


def test_the_shipped_files_load(folder: Path) -> None:
    """The starting points are valid: every mistake below is the only one in its file."""
    for name in RULE_FILES:
        assert load(Broken("none", name, 0, shipped(name)), folder)[1] is None, name
    assert load(Broken("none", "sinks", 0, shipped("sinks")), folder)[1] is None
    text = connect_text(shipped("connect"), folder)
    for source, section in SECTIONS.items():
        line = next(s.line for s in sites_of(text) if s.path == (section,))
        error = load(Broken("none", "connect", line, text), folder)[1]
        assert error is None, f"{source}: {error}"


@examples("rules")
def test_broken_rule_files_are_refused_with_file_and_line(folder: Path, broken: Broken) -> None:
    """Any one mistake in any rule file of the library: `load_paths` (what `kpiwatch rules
    check` and the worker call) raises ConfigError, each problem with file:line."""
    path, error = load(broken, folder)
    check(broken, path, error)


@examples("sinks")
def test_broken_sinks_files_are_refused_with_file_and_line(folder: Path, broken: Broken) -> None:
    """Any one mistake in the example sinks file: `load_setup_path` (the worker's
    KPIWATCH_SINKS_FILE) raises ConfigError, each problem with file:line, no secret shown."""
    path, error = load(broken, folder)
    check(broken, path, error)


@examples("connect")
def test_broken_connect_files_are_refused_with_file_and_line(folder: Path, broken: Broken) -> None:
    """Any one mistake in any section of the example connect file: `load_section` for that
    section's source (what `kpiwatch connect SOURCE` calls) raises ConfigError, each problem
    with file:line, no secret shown."""
    text = broken.text
    text = connect_text(text, folder) if isinstance(text, str) else text
    broken = replace(broken, text=text)
    path, error = load(broken, folder)
    check(broken, path, error)


# --- The commands, in subprocesses ----------------------------------------------------------


def first(strategy: st.SearchStrategy[Broken], how: str) -> Broken:
    """One example of `strategy` (of variant `how`, if given), the same on every run."""
    strategy = strategy.filter(lambda broken: not how or broken.how == how)
    found: list[Broken] = []

    @seed(SEED)
    @settings(max_examples=1, database=None, phases=[Phase.generate], deadline=None)
    @given(strategy)
    def take(broken: Broken) -> None:
        found.append(broken)

    take()
    return found[0]


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KPIWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        env={**base, "PYTHONPATH": str(REPO), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


CASES: Final = (
    ("rules check", "rules", "wrong-type", "ads", ""),
    ("rules check", "rules", "yaml-syntax", "sales", "not-utf8"),
    ("rules check", "rules", "yaml-syntax", "inventory", "unclosed-quote"),
    ("rules check", "rules", "unknown-calendar", "feeds", ""),
    ("worker rules", "rules", "bad-duration", "ads", ""),
    ("worker sinks", "sinks", "bad-secret", "sinks", "literal"),
    ("worker sinks", "sinks", "unknown-key", "sinks", ""),
    ("worker sinks", "sinks", "yaml-syntax", "sinks", "control-character"),
    ("connect", "connect", "wrong-type", "connect", ""),
    ("connect", "connect", "bad-secret", "connect", "unset"),
    ("connect", "connect", "yaml-syntax", "connect", "duplicate-key"),
)


@pytest.mark.parametrize(("command", "kind", "mistake", "name", "how"), CASES)
def test_the_commands_print_file_line_message_and_exit_2(
    tmp_path: Path, command: str, kind: str, mistake: str, name: str, how: str
) -> None:
    """The commands themselves, on one broken file of each kind: exit status 2, every problem
    on stderr as `file:line: message` with the broken line among them, no traceback."""
    broken = first(MISTAKES[mistake](name), how)
    if kind == "connect" and isinstance(broken.text, str):
        broken = replace(broken, text=connect_text(broken.text, tmp_path))
    path, error = load(broken, tmp_path)  # the in-process verdict, to compare with
    assert error is not None
    env = environ(tmp_path)
    if command == "rules check":
        args = ["rules", "check", *(str(p) for p in tmp_path.glob("*.yaml"))]
    elif command == "worker rules":
        args = ["worker"]
        rules = [path, *([tmp_path / "calendars.yaml"] if name in NEEDS_CALENDARS else [])]
        env["KPIWATCH_RULES"] = json.dumps([str(p) for p in rules])
    elif command == "worker sinks":
        args = ["worker"]
        env["KPIWATCH_SINKS_FILE"] = str(path)
    else:
        args = ["connect", source_of(broken), "--config", str(path), "--once"]
    # Where the command would go on to (it must not get there): nothing listens on port 9.
    env |= {"KPIWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:9", "KPIWATCH_REDIS_URL": "redis://127.0.0.1:9"}
    result = run(args, env, tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    printed = {line.strip() for line in result.stderr.splitlines()}
    for problem in error.problems:
        assert str(problem) in printed, (str(problem), result.stderr)
    assert any(broken.at(p.line or 0) for p in error.problems), error.problems
    for secret in (*SECRETS.values(), SHOPEE_KEY):
        assert secret not in result.stderr + result.stdout
