"""A real SMTP server on 127.0.0.1 for the mail tests (aiosmtpd), plain, STARTTLS or TLS.

The server speaks the protocol for real; tests assert on the bytes it received, parsed back with
the standard library. TLS uses a self-signed certificate for 127.0.0.1 made by the ``openssl``
command in the test's tmp dir; the client trusts it through an ``ssl.SSLContext`` of its own,
never by switching verification off.
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "reports@example.com", "smtp-pa55word-not-for-printing"

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO


@dataclass
class Received:
    """What the server accepted: envelope sender, recipients and the message as parsed."""

    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(
            Received(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], parsed)
        )
        return "250 OK"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login.decode() == USER
        and data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying context (hostname and chain) that trusts only this certificate."""
        return ssl.create_default_context(cafile=str(self.cert))


def self_signed(directory: Path) -> Certificate:
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@dataclass
class SmtpServer:
    port: int
    handler: _Handler

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@contextmanager
def smtp_server(
    *,
    starttls: Certificate | None = None,
    implicit_tls: Certificate | None = None,
    auth: bool = False,
    port: int | None = None,
) -> Iterator[SmtpServer]:
    """A running server; STARTTLS is required when ``starttls`` is given, and a login when
    ``auth`` (over plain SMTP too, so a test need not set up TLS to test a login). ``port``
    brings a server up where a client already points (a server that was down comes back)."""
    handler = _Handler()
    kwargs: dict[str, Any] = {}
    if starttls is not None:
        kwargs.update(tls_context=starttls.server_context(), require_starttls=True)
    if implicit_tls is not None:
        kwargs.update(ssl_context=implicit_tls.server_context())
    if auth:
        kwargs.update(
            authenticator=_authenticate, auth_required=True, auth_require_tls=starttls is not None
        )
    port = port or free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="127.0.0.1", **kwargs
    )
    controller.start()
    try:
        yield SmtpServer(port, handler)
    finally:
        controller.stop()
