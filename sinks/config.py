"""The sinks file as people write it: one strict pydantic model per sink `type`.

Secrets are never written in the file: a secret field names where to find it, `{env: NAME}` or
`{file: PATH}`, and `sinks.load` resolves every one at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from sinks.render import Language


class SecretSource(BaseModel):
    """Where a secret lives: an environment variable or a file (e.g. a Kubernetes secret)."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = Field(default=None, min_length=1)
    file: Path | None = None
    _value: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_place(self) -> SecretSource:
        if (self.env is None) == (self.file is None) and self._value is None:
            raise ValueError("give exactly one of env: or file:")
        return self

    @classmethod
    def of(cls, value: str) -> SecretSource:
        """A secret already in hand (tests, embedding): no file or variable behind it."""
        source = cls.model_construct(env=None, file=None)
        source._value = SecretStr(value)
        return source

    @property
    def resolved(self) -> bool:
        return self._value is not None

    def set(self, value: str) -> None:
        self._value = SecretStr(value)

    def get(self) -> SecretStr:
        if self._value is None:
            raise RuntimeError("secret used before sinks.load resolved it")
        return self._value


class SinkBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)


class DingTalkConfig(SinkBase):
    type: Literal["dingtalk"]
    url: SecretSource
    secret: SecretSource | None = None
    mention_mobiles: list[str] = []
    mention_all: bool = False
    language: Language = "zh"


class FeishuConfig(SinkBase):
    type: Literal["feishu"]
    url: SecretSource
    secret: SecretSource | None = None
    mention_user_ids: list[str] = []
    mention_all: bool = False
    language: Language = "zh"


class WeComConfig(SinkBase):
    type: Literal["wecom"]
    url: SecretSource
    msgtype: Literal["markdown", "text"] = "markdown"
    mention_user_ids: list[str] = []
    mention_mobiles: list[str] = []
    mention_all: bool = False
    language: Language = "zh"

    @model_validator(mode="after")
    def _mobiles_need_text(self) -> WeComConfig:
        # WeCom documents mentioned_mobile_list and @all for text messages only; markdown
        # mentions are `<@userid>` in the content.
        if self.msgtype == "markdown" and (self.mention_mobiles or self.mention_all):
            raise ValueError(
                "WeCom markdown messages can only mention by user id (mention_user_ids); "
                "mention_mobiles and mention_all need msgtype: text"
            )
        return self


class SlackConfig(SinkBase):
    type: Literal["slack"]
    url: SecretSource
    language: Language = "en"


class TeamsConfig(SinkBase):
    type: Literal["teams"]
    url: SecretSource
    language: Language = "en"


class WebhookConfig(SinkBase):
    type: Literal["webhook"]
    url: SecretSource
    signing_secret: SecretSource | None = None


class EmailConfig(SinkBase):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretSource | None = None
    ca_file: Path | None = None
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    timeout: float = Field(default=30.0, gt=0)
    language: Language = "en"

    @model_validator(mode="after")
    def _login_needs_both(self) -> EmailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username: and password:, or neither")
        return self

    @property
    def smtp_port(self) -> int:
        """Defaults: 465 for implicit TLS, 587 for STARTTLS submission, 25 for plain."""
        return self.port or {"tls": 465, "starttls": 587, "none": 25}[self.security]


class AlertmanagerConfig(SinkBase):
    type: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://")
    bearer_token: SecretSource | None = None
    generator_url: str | None = Field(default=None, pattern=r"^https?://")


class ConsoleConfig(SinkBase):
    type: Literal["console"]
    json_lines: bool = True


SinkConfig = Annotated[
    DingTalkConfig
    | FeishuConfig
    | WeComConfig
    | SlackConfig
    | TeamsConfig
    | WebhookConfig
    | EmailConfig
    | AlertmanagerConfig
    | ConsoleConfig,
    Field(discriminator="type"),
]

CONFIG_MODELS: dict[str, type[SinkBase]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in (
        DingTalkConfig,
        FeishuConfig,
        WeComConfig,
        SlackConfig,
        TeamsConfig,
        WebhookConfig,
        EmailConfig,
        AlertmanagerConfig,
        ConsoleConfig,
    )
}


class SinksFile(BaseModel):
    """The whole file: `sinks:` and nothing else."""

    model_config = ConfigDict(extra="forbid")

    sinks: list[SinkConfig]


def json_schema() -> dict[str, object]:
    """For editors: autocomplete and checking of sinks files."""
    return SinksFile.model_json_schema()
