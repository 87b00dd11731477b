"""Sending mail over SMTP (DESIGN 4): the weekly report now, alerts later. Standard library only.

:class:`MailServer` is read from the ``CONNECTOR_SMTP_*`` settings; :func:`compose` builds a
message (a plain-text part, an HTML alternative, attachments); :func:`send` delivers it over
STARTTLS (the default), implicit TLS or plain SMTP, with a login when a user is set. Every
failure is one :class:`MailError` line that names the server and never the password: no SMTP
host configured, connection refused, TLS failed, login refused, recipient refused.

TLS always verifies the server's certificate against the system's trust store
(``ssl.create_default_context``); a caller may pass its own ``ssl.SSLContext`` (the tests use a
context that trusts their self-signed certificate), never one that skips verification.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Literal

from connector.errors import ConfigError, ConnectorError
from connector.logs import scrub

if TYPE_CHECKING:
    from pydantic import SecretStr

    from connector.config import Settings

Security = Literal["starttls", "tls", "none"]
_TIMEOUT_SECONDS = 30.0


class MailError(ConnectorError):
    """A message could not be handed to the SMTP server; the text says why, in one line."""

    default_hint = "check the CONNECTOR_SMTP_* settings; `connector doctor` shows them"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class MailServer:
    host: str
    port: int
    security: Security
    sender: str
    user: str | None = None
    password: SecretStr | None = None
    timeout: float = _TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> MailServer:
        if not settings.connector_smtp_host:
            raise ConfigError(
                "no SMTP host configured",
                hint="set CONNECTOR_SMTP_HOST (and CONNECTOR_SMTP_PORT, CONNECTOR_MAIL_FROM)",
            )
        if not settings.connector_mail_from:
            raise ConfigError("no sender address configured", hint="set CONNECTOR_MAIL_FROM")
        if settings.connector_smtp_password is not None and not settings.connector_smtp_user:
            raise ConfigError("CONNECTOR_SMTP_PASSWORD is set without CONNECTOR_SMTP_USER")
        return cls(
            host=settings.connector_smtp_host,
            port=settings.connector_smtp_port,
            security=settings.connector_smtp_security,
            sender=settings.connector_mail_from,
            user=settings.connector_smtp_user,
            password=settings.connector_smtp_password,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_recipients(text: str) -> list[str]:
    """``a@x.com,b@y.org`` -> the addresses, each checked (no display names, no header tricks)."""
    from email_validator import EmailNotValidError, validate_email

    found = [part.strip() for part in text.split(",") if part.strip()]
    if not found:
        raise ConfigError("no recipient given", hint="--email ADDR[,ADDR]")
    for address in found:
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError:
            raise ConfigError(
                f"not an email address: {address[:80]!a}", hint="--email ADDR[,ADDR]"
            ) from None
    return found


def compose(
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """A message with a plain-text part, an HTML alternative and attachments."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.mime_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def send(
    server: MailServer, message: EmailMessage, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Hand ``message`` to the server; raises :class:`MailError` (one line) on any failure."""
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    try:
        with _connect(server, context) as client:
            if server.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if server.user:
                password = server.password.get_secret_value() if server.password else ""
                client.login(server.user, password)
            client.send_message(message)
    except smtplib.SMTPNotSupportedError as exc:
        if "STARTTLS" in str(exc):
            raise MailError(
                f"the SMTP server {server.where} does not offer STARTTLS",
                hint="set CONNECTOR_SMTP_SECURITY=tls for port 465, or none for a local relay",
            ) from None
        raise MailError(
            f"the SMTP server {server.where} does not offer a login",
            hint="unset CONNECTOR_SMTP_USER, or use starttls/tls if it offers one only then",
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(
            f"the SMTP server {server.where} refused the login "
            f"of {server.user!r} ({exc.smtp_code})",
            hint="check CONNECTOR_SMTP_USER and CONNECTOR_SMTP_PASSWORD",
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(str(r) for r in exc.recipients))
        raise MailError(
            f"the SMTP server {server.where} refused the recipient(s) {refused}"
        ) from None
    except smtplib.SMTPSenderRefused as exc:
        raise MailError(
            f"the SMTP server {server.where} refused the sender {exc.sender!r} ({exc.smtp_code})",
            hint="check CONNECTOR_MAIL_FROM",
        ) from None
    except smtplib.SMTPResponseException as exc:
        reply = _reply(exc.smtp_error)
        raise MailError(
            f"the SMTP server {server.where} answered {exc.smtp_code} {reply}"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise MailError(
            f"TLS with the SMTP server {server.where} failed: certificate verify failed "
            f"({exc.verify_message})",
            hint="the server's certificate is not trusted by this machine or is for another name",
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        raise MailError(
            f"TLS with the SMTP server {server.where} failed: {reason}",
            hint="check CONNECTOR_SMTP_SECURITY (starttls on 587, tls on 465) and the certificate",
        ) from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPException) as exc:
        raise MailError(f"SMTP with {server.where} failed: {_reply(str(exc))}") from None
    except ConnectionRefusedError:
        raise MailError(
            f"the SMTP server {server.where} refused the connection",
            hint="check CONNECTOR_SMTP_HOST and CONNECTOR_SMTP_PORT",
        ) from None
    except TimeoutError:
        raise MailError(f"the SMTP server {server.where} did not answer in time") from None
    except OSError as exc:
        raise MailError(
            f"cannot reach the SMTP server {server.where}: {exc.strerror or type(exc).__name__}",
            hint="check CONNECTOR_SMTP_HOST and CONNECTOR_SMTP_PORT",
        ) from None


def _connect(server: MailServer, context: ssl.SSLContext) -> smtplib.SMTP:
    if server.security == "tls":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout, context=context)
    return smtplib.SMTP(server.host, server.port, timeout=server.timeout)


def _reply(value: bytes | str) -> str:
    """A server's reply as one short, scrubbed line."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return scrub(" ".join(text.split()))[:200]
