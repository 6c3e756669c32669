"""The email sink against a real SMTP server (aiosmtpd) on 127.0.0.1: the message parsed back,
plain, STARTTLS and implicit TLS with login, and which SMTP failures are retried."""

from __future__ import annotations

import email
import logging
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from rules.alerts import Alert
from sinks.base import SinkError
from sinks.config import EmailConfig
from sinks.email import EmailSink

PASSWORD = "SMTP-PASSWORD-3"
AlertFactory = Callable[..., Alert]


class Mailbox:
    """An SMTP handler that keeps what it is given, or refuses recipients when told to."""

    def __init__(self, rcpt_reply: str = "250 OK") -> None:
        self.envelopes: list[Envelope] = []
        self.rcpt_reply = rcpt_reply

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def message(self) -> EmailMessage:
        (envelope,) = self.envelopes
        content = envelope.original_content or b""
        parsed: EmailMessage = email.message_from_bytes(content, policy=default)  # type: ignore[assignment]
        return parsed


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"ops",
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[Mailbox, int]]]:
    controllers: list[Controller] = []

    def start(mailbox: Mailbox | None = None, **options: Any) -> tuple[Mailbox, int]:
        mailbox = mailbox or Mailbox()
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return mailbox, port

    yield start
    for controller in controllers:
        controller.stop()


def config(port: int, **overrides: Any) -> EmailConfig:
    settings: dict[str, Any] = {
        "name": "ops-mail",
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "kpiwatch@example.test",
        "to": ["ops@example.test", "lead@example.test"],
        "timeout": 5,
        **overrides,
    }
    return EmailConfig.model_validate(settings)


async def test_one_multipart_message_with_text_and_html(
    serve: Callable[..., tuple[Mailbox, int]], make_alert: AlertFactory
) -> None:
    mailbox, port = serve()
    await EmailSink(config(port)).send([make_alert("A"), make_alert("B")])
    (envelope,) = mailbox.envelopes
    assert envelope.mail_from == "kpiwatch@example.test"
    assert envelope.rcpt_tos == ["ops@example.test", "lead@example.test"]
    message = mailbox.message()
    assert message["Subject"] == "[WARNING] acos-high: 2 alerts"
    assert message["To"] == "ops@example.test, lead@example.test"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert "SKU B" in plain.get_content()  # type: ignore[attr-defined]
    assert "<td>&gt; 35%</td>" in html.get_content()  # type: ignore[attr-defined]


async def test_chinese_subject_survives_the_round_trip(
    serve: Callable[..., tuple[Mailbox, int]], make_alert: AlertFactory
) -> None:
    mailbox, port = serve()
    await EmailSink(config(port, language="zh")).send([make_alert()])
    assert mailbox.message()["Subject"] == "【警告】acos-high：acos 40.00%"  # noqa: RUF001


async def test_starttls_with_login(
    serve: Callable[..., tuple[Mailbox, int]],
    certificate: tuple[Path, Path],
    make_alert: AlertFactory,
) -> None:
    mailbox, port = serve(
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    settings = config(
        port, security="starttls", ca_file=str(certificate[0]), username="ops",
        password={"env": "UNUSED"},
    )  # fmt: skip
    settings.password.set(PASSWORD)  # type: ignore[union-attr]
    await EmailSink(settings).send([make_alert()])
    assert len(mailbox.envelopes) == 1


async def test_implicit_tls(
    serve: Callable[..., tuple[Mailbox, int]],
    certificate: tuple[Path, Path],
    make_alert: AlertFactory,
) -> None:
    mailbox, port = serve(ssl_context=server_context(certificate))
    await EmailSink(config(port, security="tls", ca_file=str(certificate[0]))).send([make_alert()])
    assert len(mailbox.envelopes) == 1


async def test_untrusted_certificate_is_not_retried(
    serve: Callable[..., tuple[Mailbox, int]],
    certificate: tuple[Path, Path],
    make_alert: AlertFactory,
) -> None:
    _, port = serve(ssl_context=server_context(certificate))
    with pytest.raises(SinkError) as caught:
        await EmailSink(config(port, security="tls")).send([make_alert()])
    assert caught.value.retryable is False


async def test_wrong_password_is_a_refusal_without_the_password(
    serve: Callable[..., tuple[Mailbox, int]],
    certificate: tuple[Path, Path],
    make_alert: AlertFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, port = serve(
        tls_context=server_context(certificate), authenticator=authenticate, auth_require_tls=True
    )
    settings = config(
        port, security="starttls", ca_file=str(certificate[0]), username="ops",
        password={"env": "UNUSED"},
    )  # fmt: skip
    settings.password.set("WRONG-" + PASSWORD)  # type: ignore[union-attr]
    with pytest.raises(SinkError) as caught:
        await EmailSink(settings).send([make_alert()])
    assert (caught.value.retryable, str(caught.value)) == (False, "sink ops-mail: SMTP 535")
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.")]
    assert all(PASSWORD not in m for m in [*ours, repr(caught.value)])


@pytest.mark.parametrize(
    ("reply", "retryable"), [("550 no such mailbox", False), ("451 try again later", True)]
)
async def test_refused_recipients(
    reply: str,
    retryable: bool,
    serve: Callable[..., tuple[Mailbox, int]],
    make_alert: AlertFactory,
) -> None:
    _, port = serve(Mailbox(rcpt_reply=reply))
    with pytest.raises(SinkError) as caught:
        await EmailSink(config(port)).send([make_alert()])
    assert caught.value.retryable is retryable


async def test_no_server_is_retryable(make_alert: AlertFactory) -> None:
    with pytest.raises(SinkError) as caught:
        await EmailSink(config(free_port())).send([make_alert()])
    assert caught.value.retryable is True
    assert str(caught.value) == "sink ops-mail: SMTP failed (ConnectionRefusedError)"
