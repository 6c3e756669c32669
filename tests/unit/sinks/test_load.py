"""Sinks files: bad ones, one per mistake, with the exact message (file:line: what); good ones
load with every secret resolved, and no secret value appears in any problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.errors import ConfigError
from sinks.config import DingTalkConfig, EmailConfig, json_schema
from sinks.load import load_path, load_text
from sinks.registry import SINK_TYPES, sink_class

BAD = Path(__file__).parent / "bad"
ENVIRON = {"DT_URL": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN-9"}
KNOWN = ", ".join(sorted(SINK_TYPES))

EXPECTED: dict[str, list[tuple[int | None, str]]] = {
    "unknown-key.yaml": [(5, "unknown key 'mention'")],
    "unknown-type.yaml": [(3, f"type: unknown sink type 'pager' (known: {KNOWN})")],
    "missing-type.yaml": [(2, "missing required key 'type'")],
    "missing-secrets.yaml": [
        (4, "sink 'ops': url: environment variable NOT_SET_ANYWHERE is not set or empty"),
        (
            11,
            "sink 'mail': password: cannot read secret file /nonexistent/smtp-password: "
            "No such file or directory",
        ),
    ],
    "literal-secret.yaml": [
        (
            4,
            "url: a secret is not written in the file: name where it lives, "
            "{env: VARIABLE} or {file: /path/to/file}",
        ),
    ],
    "duplicate-names.yaml": [
        (5, f"sink name 'ops' is already used at {BAD / 'duplicate-names.yaml'}:2"),
    ],
    "wecom-mobiles-in-markdown.yaml": [
        (
            2,
            "file: WeCom markdown messages can only mention by user id (mention_user_ids); "
            "mention_mobiles and mention_all need msgtype: text",
        ),
    ],
    "empty.yaml": [(None, "the file is empty; expected 'sinks:'")],
    "two-sources.yaml": [(4, "url: give exactly one of env: or file:")],
    "route-unknown-sink.yaml": [(9, "route: no sink named 'ads-room' (known: ops)")],
    "route-bad-regex.yaml": [
        (
            8,
            "match_re: store: 'JP-(1' is not a regular expression: "
            "missing ), unterminated subpattern at position 3",
        ),
        (9, "group_wait: 'soon' is not a duration (e.g. 30s, 5m, 2h, 1d)"),
    ],
}


def test_every_bad_file_has_an_expectation() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_gives_the_exact_problems(name: str) -> None:
    path = BAD / name
    with pytest.raises(ConfigError) as caught:
        load_path(path, ENVIRON)
    found = [(p.file, p.line, p.message) for p in caught.value.problems]
    assert found == [(str(path), line, message) for line, message in EXPECTED[name]]
    assert "TOKEN-9" not in str(caught.value)


def test_secrets_come_from_the_environment_and_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "dingtalk-secret"
    secret_file.write_text("SEC-FROM-FILE\n", encoding="utf-8")
    text = (
        "sinks:\n"
        "  - name: ops\n"
        "    type: dingtalk\n"
        "    url: {env: DT_URL}\n"
        f"    secret: {{file: {secret_file}}}\n"
    )
    (config,) = load_text(text, "sinks.yaml", ENVIRON)
    assert isinstance(config, DingTalkConfig)
    assert config.url.get().get_secret_value() == ENVIRON["DT_URL"]
    assert config.secret is not None
    assert config.secret.get().get_secret_value() == "SEC-FROM-FILE"  # newline stripped
    assert "TOKEN-9" not in repr(config)
    assert "SEC-FROM-FILE" not in repr(config)
    assert config.language == "zh"


def test_email_defaults_its_port_by_security() -> None:
    text = (
        "sinks:\n  - name: mail\n    type: email\n    host: smtp.example.test\n"
        "    security: tls\n    sender: a@example.test\n    to: [b@example.test]\n"
    )
    (config,) = load_text(text, "sinks.yaml", {})
    assert isinstance(config, EmailConfig)
    assert config.smtp_port == 465


@pytest.mark.parametrize("type_", sorted(SINK_TYPES))
def test_every_registered_class_imports_and_builds_from_config(type_: str) -> None:
    assert callable(sink_class(type_).from_config)


def test_json_schema_knows_every_type() -> None:
    schema = str(json_schema())
    assert all(f"'{type_}'" in schema for type_ in SINK_TYPES)
