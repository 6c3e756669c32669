"""The sinks file as people write it: one strict pydantic model per sink `type`.

Secrets are never written in the file: a secret field names where to find it, `{env: NAME}` or
`{file: PATH}`, and `sinks.load` resolves every one at load time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from rules.fileconfig import Seconds, SecretSource
from sinks.render import Language


class RateLimit(BaseModel):
    """At most `messages` sends per `per` seconds, counted across every worker (in Redis)."""

    model_config = ConfigDict(extra="forbid")

    messages: int = Field(ge=1)
    per: Annotated[Seconds, Field(gt=0)]


class Mention(BaseModel):
    """Whom a route's chat messages @: by mobile number, by the platform's user id, or all.
    Set on a route, it replaces the sink's own mentions for the alerts of that route; each
    robot uses what its platform supports (see README, "Mentions")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mobiles: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    all: bool = False


class SinkBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    rate_limit: RateLimit | None = None

    def mentioning(self, mention: Mention) -> SinkBase:
        """This sink with a route's mentions in place of its own (a shallow copy shares the
        resolved secrets); a sink that cannot @ anyone is itself."""
        return self


class DingTalkConfig(SinkBase):
    type: Literal["dingtalk"]
    # The robot throttles a group for 10 minutes past 20 messages a minute.
    rate_limit: RateLimit | None = RateLimit(messages=20, per=60)
    url: SecretSource
    secret: SecretSource | None = None
    mention_mobiles: list[str] = []
    # DingTalk user ids (atUserIds), for members without a public mobile number.
    mention_user_ids: list[str] = []
    mention_all: bool = False
    language: Language = "zh"

    def mentioning(self, mention: Mention) -> SinkBase:
        update = {"mention_mobiles": list(mention.mobiles), "mention_all": mention.all}
        return self.model_copy(update={**update, "mention_user_ids": list(mention.user_ids)})


class FeishuConfig(SinkBase):
    type: Literal["feishu"]
    # Feishu documents 100 a minute and 5 a second per bot; 5 a second is the tighter one.
    rate_limit: RateLimit | None = RateLimit(messages=5, per=1)
    url: SecretSource
    secret: SecretSource | None = None
    mention_user_ids: list[str] = []
    mention_all: bool = False
    language: Language = "zh"

    def mentioning(self, mention: Mention) -> SinkBase:
        # Feishu's custom bot @s by open_id / user_id (`<at user_id=...>`), not by mobile.
        return self.model_copy(
            update={"mention_user_ids": list(mention.user_ids), "mention_all": mention.all}
        )


class WeComConfig(SinkBase):
    type: Literal["wecom"]
    # WeCom documents 20 messages a minute per robot.
    rate_limit: RateLimit | None = RateLimit(messages=20, per=60)
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

    def mentioning(self, mention: Mention) -> SinkBase:
        if self.msgtype == "markdown":  # user ids only (see _mobiles_need_text)
            return self.model_copy(update={"mention_user_ids": list(mention.user_ids)})
        update = {"mention_mobiles": list(mention.mobiles), "mention_all": mention.all}
        return self.model_copy(update={**update, "mention_user_ids": list(mention.user_ids)})


class SlackConfig(SinkBase):
    type: Literal["slack"]
    url: SecretSource
    # Slack member ids (U012AB3CD), written `<@U012AB3CD>` in the message.
    mention_user_ids: list[str] = []
    language: Language = "en"

    def mentioning(self, mention: Mention) -> SinkBase:
        return self.model_copy(update={"mention_user_ids": list(mention.user_ids)})


class TeamsConfig(SinkBase):
    type: Literal["teams"]
    # A Workflows webhook URL ("When a Teams webhook request is received").
    url: SecretSource
    # Microsoft Entra user principal names (user@example.com) or object ids.
    mention_user_ids: list[str] = []
    language: Language = "en"

    def mentioning(self, mention: Mention) -> SinkBase:
        return self.model_copy(update={"mention_user_ids": list(mention.user_ids)})


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
    # Firing alerts are posted again this often with endsAt 4 intervals ahead, as Alertmanager
    # expects of its clients (Prometheus does the same); otherwise it resolves them itself.
    resend_interval: Annotated[Seconds, Field(gt=0)] = 60.0


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


LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class RouteConfig(BaseModel):
    """One node of the routing tree, as written (Alertmanager's `route:`). Unset grouping and
    language settings are inherited from the parent when the tree is compiled (sinks.route)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    sinks: list[str] = []
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[Annotated[str, Field(pattern=LABEL_NAME)]] | None = None
    group_wait: Seconds | None = None
    group_interval: Seconds | None = None
    language: Language | None = None
    # Whom this route's chat messages @ (inherited by child routes that set none).
    mention: Mention | None = None
    routes: list[RouteConfig] = []

    @field_validator("match_re")
    @classmethod
    def _regexes_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{label}: {pattern!r} is not a regular expression: {exc}"
                ) from exc
        return value


class Delivery(BaseModel):
    """How hard to try and how long to remember what was sent (the dedupe window)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=5, ge=1, le=50)
    base_delay: Seconds = 0.5
    max_delay: Seconds = 30.0
    dedupe_window: Annotated[Seconds, Field(gt=0)] = 86400.0
    # One HTTP request's budget (connecting takes at most 5 s of it): a receiver slower than
    # this counts as failed, and the request is retried.
    timeout: Annotated[Seconds, Field(gt=0)] = 10.0


class GrafanaLinks(BaseModel):
    """Where an alert's "Grafana" link goes: the dashboard in deploy/grafana/dashboards."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    dashboard_uid: str = Field(default="kpiwatch", min_length=1)


class SilenceLinks(BaseModel):
    """Signed "silence" / "acknowledge" links, served by the worker's HTTP API at `url`
    (the address people reach it at). Anyone holding an unexpired link can use it: the key
    signs them, and rotating the key voids every link sent."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    key: SecretSource
    lifetime: Annotated[Seconds, Field(gt=0)] = 7 * 86400.0
    duration: Annotated[Seconds, Field(gt=0)] = 2 * 3600.0


class LinksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grafana: GrafanaLinks | None = None
    silence: SilenceLinks | None = None


class ScheduleConfig(BaseModel):
    """A report sent on a schedule (`schedules:`): a team's `period` report each time `cron`
    comes round in `timezone`, to `sinks` or, without them, wherever the routing tree sends
    the labels {team, report: name}. Markdown to chat robots, HTML to email."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    team: str = Field(min_length=1)
    period: Literal["day", "week", "month"] = "day"
    cron: str = Field(min_length=1, description="five fields, e.g. '0 9 * * 1' (Mondays 09:00)")
    timezone: str = "UTC"
    sinks: list[str] = []
    # A worker that was down when the report fell due sends it when back, if within this long.
    catch_up: Annotated[Seconds, Field(gt=0)] = 3600.0

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression of five fields (m h dom mon dow)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Asia/Shanghai)") from None
        return value


class SinksFile(BaseModel):
    """The whole file: `sinks:`, and optionally the routing tree, delivery settings and the
    links each alert carries."""

    model_config = ConfigDict(extra="forbid")

    sinks: list[SinkConfig]
    route: RouteConfig | None = None
    delivery: Delivery = Delivery()
    links: LinksConfig | None = None
    schedules: list[ScheduleConfig] = []


def json_schema() -> dict[str, object]:
    """For editors: autocomplete and checking of sinks files."""
    return SinksFile.model_json_schema()
