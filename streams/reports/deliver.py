"""Send a rendered report through the sinks of the sinks file, with their delivery settings:
the robots' own payloads, signing and error codes (Markdown), email as HTML with the charts as
inline parts, retries with backoff and the shared per-robot rate limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

from rules.alerts import Alert
from sinks import http
from sinks.base import Sink, SinkError
from sinks.config import Delivery, EmailConfig, RateLimit, SinkBase
from sinks.deliver import attempt_delivery
from sinks.email import EmailSink
from sinks.ratelimit import Limiter
from sinks.registry import build
from sinks.render import Item, Message
from sinks.robot import RobotSink

log = logging.getLogger(__name__)

# Sink types that take a report: chat robots get Markdown, email gets HTML.
REPORT_SINKS = frozenset({"dingtalk", "feishu", "wecom", "slack", "teams", "email", "console"})


@dataclass(frozen=True)
class Rendered:
    """One report in the forms the sinks take."""

    title: str
    markdown: str
    html: str  # with `cid:NAME` image sources
    charts: dict[str, bytes]


@dataclass(frozen=True)
class _ReportMessage(Message):
    """A robot's message whose body is the report: one item, so every robot's payload (which
    walks the items) carries it; `markdown()` and `text()` are the report itself."""

    body: str = ""

    def markdown(self) -> str:
        return self.body

    def text(self) -> str:
        return self.body


class _RobotReport:
    """A robot sink's payload, signing and answer check, for a report instead of alerts."""

    def __init__(self, robot: RobotSink[Any], rendered: Rendered, client: httpx.AsyncClient):
        self.name = robot.name
        self._robot = robot
        self._client = client
        language = robot._config.language  # the robot's own language setting
        self._message = _ReportMessage(
            language, rendered.title, "resolved", (Item(rendered.markdown, ()),),
            body=rendered.markdown,
        )  # fmt: skip

    async def send(self, alerts: Sequence[Alert]) -> None:
        body = self._robot.body(self._message)
        url = self._robot.url()
        response = await http.post(self._client, self.name, url, http.json_bytes(body))
        self._robot.check(response)


class _EmailReport(EmailSink):
    """The email sink's SMTP session and error handling; the report as the message."""

    def __init__(self, config: EmailConfig, rendered: Rendered) -> None:
        super().__init__(config)
        self._rendered = rendered

    def message(self, alerts: Sequence[Alert]) -> EmailMessage:
        config, rendered = self._config, self._rendered
        message = EmailMessage()
        message["Subject"] = rendered.title
        message["From"] = config.sender
        message["To"] = ", ".join(config.to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2] or None)
        message.set_content(rendered.markdown)
        message.add_alternative(rendered.html, subtype="html")
        for part in message.iter_parts():
            if part.get_content_type() == "text/html":
                for name, png in rendered.charts.items():
                    part.add_related(png, "image", "png", cid=f"<{name}>", filename=f"{name}.png")
        return message


class _ConsoleReport:
    def __init__(self, name: str, rendered: Rendered) -> None:
        self.name = name
        self._rendered = rendered

    async def send(self, alerts: Sequence[Alert]) -> None:
        print(self._rendered.markdown, flush=True)


def report_sink(config: SinkBase, rendered: Rendered, client: httpx.AsyncClient) -> Sink:
    kind = getattr(config, "type", "")
    if kind not in REPORT_SINKS:
        raise SinkError(config.name, f"a {kind} sink does not take reports", retryable=False)
    if isinstance(config, EmailConfig):
        return _EmailReport(config, rendered)
    if kind == "console":
        return _ConsoleReport(config.name, rendered)
    robot = build(config, client)
    if not isinstance(robot, RobotSink):
        raise SinkError(config.name, f"a {kind} sink does not take reports", retryable=False)
    return _RobotReport(robot, rendered, client)


async def send_report(
    sink: Sink,
    *,
    delivery: Delivery,
    limit: RateLimit | None,
    limiter: Limiter,
) -> SinkError | None:
    """Deliver with the sinks' retry policy and rate limit; None when delivered."""

    async def slot() -> None:
        while limit is not None and (wait := await limiter.try_acquire(sink.name, limit)) > 0:
            await asyncio.sleep(wait)

    return await attempt_delivery(
        sink,
        [],
        attempts=delivery.attempts,
        base_delay=delivery.base_delay,
        max_delay=delivery.max_delay,
        before_attempt=slot,
    )
