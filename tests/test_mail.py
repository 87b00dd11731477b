"""connector.mail and ``report --email`` against a real SMTP server on 127.0.0.1 (aiosmtpd).

Each test asserts on the message as the server received it: headers, the HTML part, the CSV
attachment parsed back; errors are one line and never show the password.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from connector import mail
from connector import report as rpt
from connector.errors import ConfigError
from tests.cli.runner import run
from tests.report.data import NOW, WEEK, Db, fill, links, open_db, parse_page
from tests.smtp_server import PASSWORD, USER, Certificate, free_port, self_signed, smtp_server

SENDER = "connector@example.com"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    opened = await open_db(database_url)
    yield opened
    await opened.store.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


def _server(port: int, security: mail.Security, **kwargs: object) -> mail.MailServer:
    return mail.MailServer("127.0.0.1", port, security, SENDER, **kwargs)  # type: ignore[arg-type]  # MailServer's own fields


def _parts(message: EmailMessage) -> tuple[str, str, list[dict[str, str]], str]:
    """The plain-text part, the HTML part, the CSV rows and the CSV's filename."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    data = attachment.get_payload(decode=True)
    assert isinstance(data, bytes)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    return text.get_content(), html.get_content(), rows, attachment.get_filename() or ""


async def _report(db: Db) -> rpt.Report:
    await fill(db)
    return await rpt.build_report(db.store, WEEK, NOW)


async def test_report_arrives_as_html_with_the_csv_attached(db: Db) -> None:
    built = await _report(db)
    with smtp_server() as server:
        rpt.email_report(
            built,
            _server(server.port, "none"),
            ["assistant@example.com", "admin@example.org"],
            contact_url="https://app.example/contact/{contact_id}",
        )
    (got,) = server.received
    assert got.sender == SENDER
    assert got.recipients == ["assistant@example.com", "admin@example.org"]
    message = got.message
    assert message["From"] == SENDER
    assert message["To"] == "assistant@example.com, admin@example.org"
    assert message["Subject"] == "Bounce report: Tue 3 Mar to Tue 10 Mar 2026"
    assert message["Date"]
    assert message["Message-ID"]
    text, html, rows, filename = _parts(message)
    assert "9 bounce(s) from 6 contact(s)" in text
    page = rpt.render_html(built, contact_url="https://app.example/contact/{contact_id}")
    assert html.replace("\r\n", "\n").rstrip("\n") == page.rstrip("\n")
    parse_page(html)  # no external resources: no src, scripts or style sheets
    assert ("(no name recorded)", "https://app.example/contact/101") in links(html)
    assert filename == "bounce-report-2026-03-10.csv"
    assert [row["contact_id"] for row in rows] == [r.contact_id or "" for r in built.rows]
    assert rows[0]["emails"] == "alice@example.com"


async def test_starttls_with_login(db: Db, certificate: Certificate) -> None:
    built = await _report(db)
    login = {"user": USER, "password": SecretStr(PASSWORD)}
    with smtp_server(starttls=certificate, auth=True) as server:
        rpt.email_report(
            built,
            _server(server.port, "starttls", **login),
            ["assistant@example.com"],
            ssl_context=certificate.client_context(),
        )
    (got,) = server.received
    assert got.recipients == ["assistant@example.com"]
    _, html, rows, _ = _parts(got.message)
    assert "Needs a person (3)" in html
    assert len(rows) == len(built.rows)


def test_implicit_tls(certificate: Certificate) -> None:
    with smtp_server(implicit_tls=certificate) as server:
        message = mail.compose(
            sender=SENDER, recipients=["a@example.com"], subject="hello", text="body"
        )
        mail.send(_server(server.port, "tls"), message, ssl_context=certificate.client_context())
    (got,) = server.received
    assert got.message["Subject"] == "hello"


def test_an_untrusted_certificate_is_refused(certificate: Certificate) -> None:
    message = mail.compose(sender=SENDER, recipients=["a@example.com"], subject="s", text="t")
    with smtp_server(starttls=certificate) as server, pytest.raises(mail.MailError) as caught:
        mail.send(_server(server.port, "starttls"), message)  # the system trust store
    assert "TLS with the SMTP server 127.0.0.1" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)
    assert server.received == []


def test_a_wrong_password_is_one_line_without_the_password(certificate: Certificate) -> None:
    message = mail.compose(sender=SENDER, recipients=["a@example.com"], subject="s", text="t")
    wrong = "wrong-" + PASSWORD
    login = {"user": USER, "password": SecretStr(wrong)}
    with (
        smtp_server(starttls=certificate, auth=True) as server,
        pytest.raises(mail.MailError) as caught,
    ):
        mail.send(
            _server(server.port, "starttls", **login),
            message,
            ssl_context=certificate.client_context(),
        )
    text = str(caught.value)
    assert f"refused the login of '{USER}' (535)" in text
    assert PASSWORD not in text
    assert "\n" not in text


def test_a_closed_port_is_refused() -> None:
    message = mail.compose(sender=SENDER, recipients=["a@example.com"], subject="s", text="t")
    with pytest.raises(mail.MailError) as caught:
        mail.send(_server(free_port(), "none"), message)
    assert "refused the connection" in str(caught.value)


def test_starttls_not_offered() -> None:
    message = mail.compose(sender=SENDER, recipients=["a@example.com"], subject="s", text="t")
    with smtp_server() as server, pytest.raises(mail.MailError) as caught:
        mail.send(_server(server.port, "starttls"), message)
    assert "does not offer STARTTLS" in str(caught.value)


def test_recipients_are_checked() -> None:
    assert mail.parse_recipients(" a@example.com, b@example.org ,") == [
        "a@example.com",
        "b@example.org",
    ]
    for bad in ("", "a@example.com\r\nBcc: x@evil.example", "Name <a@example.com>", "nobody"):
        with pytest.raises(ConfigError):
            mail.parse_recipients(bad)


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def filled_store(db: Db, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    for name in ("CONNECTOR_SMTP_HOST", "CONNECTOR_SMTP_USER", "CONNECTOR_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return database_url


async def test_report_email_command(
    db: Db, filled_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(db)
    with smtp_server() as server:
        monkeypatch.setenv("CONNECTOR_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("CONNECTOR_SMTP_PORT", str(server.port))
        monkeypatch.setenv("CONNECTOR_SMTP_SECURITY", "none")
        monkeypatch.setenv("CONNECTOR_MAIL_FROM", SENDER)
        monkeypatch.setenv("CONNECTOR_CONTACT_URL", "https://app.example/c/{contact_id}")
        args = ("report", "--since", "3650d", "--email", "a@example.com,b@example.com")
        code, out, err = await asyncio.to_thread(run, *args)  # the command runs its own loop
    assert code == 0, err
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("sent the report (8 contact(s)) to a@example.com, b@example.com via ")
    (got,) = server.received
    assert got.recipients == ["a@example.com", "b@example.com"]
    _, html, rows, _ = _parts(got.message)
    assert "https://app.example/c/101" in [href for _, href in links(html)]
    assert rows


def test_report_email_without_a_host_says_so(
    filled_store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    code, _, err = run("report", "--email", "a@example.com")
    assert code == 1
    assert err.startswith("error: no SMTP host configured")
    assert len(err.strip().splitlines()) == 1


def test_report_email_refused_is_one_line(
    filled_store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONNECTOR_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CONNECTOR_SMTP_PORT", str(free_port()))
    monkeypatch.setenv("CONNECTOR_SMTP_USER", USER)
    monkeypatch.setenv("CONNECTOR_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("CONNECTOR_MAIL_FROM", SENDER)
    code, _, err = run("report", "--email", "a@example.com")
    assert code == 1
    assert "refused the connection" in err
    assert PASSWORD not in err
    assert len(err.strip().splitlines()) == 1
