"""Email over SMTP: one multipart/alternative message (plain text and HTML) per call.

Docs: RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS on 465); Python's smtplib.
The standard library's blocking client runs in a worker thread: no extra dependency, and a
send is one short exchange.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from rules.alerts import Alert
from sinks.base import SinkError
from sinks.config import EmailConfig
from sinks.links import Links
from sinks.render import render


class EmailSink:
    """SMTP replies decide retries: 4xx is transient, 5xx permanent (RFC 5321 §4.2.1); a lost
    connection is transient. The password never appears in an error."""

    links: Links | None = None  # set by sinks.notifier from the sinks file's `links:`

    def __init__(self, config: EmailConfig) -> None:
        self.name = config.name
        self._config = config

    @classmethod
    def from_config(cls, config: EmailConfig, client: httpx.AsyncClient) -> EmailSink:
        return cls(config)

    async def send(self, alerts: Sequence[Alert]) -> None:
        message = self.message(alerts)
        try:
            await asyncio.to_thread(self._deliver, message)
        except smtplib.SMTPResponseException as exc:
            raise SinkError(
                self.name, f"SMTP {exc.smtp_code}", retryable=exc.smtp_code < 500
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            retryable = all(code < 500 for code in codes)
            raise SinkError(
                self.name, f"recipients refused (SMTP {codes})", retryable=retryable
            ) from None
        except ssl.SSLCertVerificationError:
            raise SinkError(
                self.name, "the server's certificate is not trusted", retryable=False
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SinkError(
                self.name, f"SMTP failed ({type(exc).__name__})", retryable=True
            ) from None

    def message(self, alerts: Sequence[Alert]) -> EmailMessage:
        rendered = render(alerts, self._config.language, self.links)
        message = EmailMessage()
        message["Subject"] = rendered.title
        message["From"] = self._config.sender
        message["To"] = ", ".join(self._config.to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self._config.sender.rpartition("@")[2] or None)
        message.set_content(rendered.text())
        message.add_alternative(rendered.html(), subtype="html")
        return message

    def _deliver(self, message: EmailMessage) -> None:
        config = self._config
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.smtp_port, timeout=config.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.smtp_port, timeout=config.timeout)
        with smtp:
            if config.security == "starttls":
                smtp.starttls(context=context)
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password.get().get_secret_value())
            smtp.send_message(message, from_addr=config.sender, to_addrs=list(config.to))
