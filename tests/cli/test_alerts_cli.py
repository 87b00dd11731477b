"""``connector alerts test`` and ``alerts list`` (DESIGN 5), against a real SMTP server and a
real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.alerts import Alert, AlertKind, raise_alert
from connector.store import open_store
from tests.cli.runner import run
from tests.smtp_server import free_port, smtp_server
from tests.test_alerts import hook_server

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def alert_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    monkeypatch.setenv("CONNECTOR_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CONNECTOR_SMTP_SECURITY", "none")
    monkeypatch.setenv("CONNECTOR_MAIL_FROM", "connector@example.com")
    monkeypatch.setenv("CONNECTOR_ALERT_EMAIL", "admin@example.com, ops@example.com")


async def test_alerts_test_delivers_to_every_channel(
    alert_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as smtp, hook_server() as hook:
        monkeypatch.setenv("CONNECTOR_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("CONNECTOR_ALERT_WEBHOOK_URL", hook.url("/hook?token=QUERYSECRET"))
        code, out, err = await asyncio.to_thread(run, "alerts", "test")
    assert code == 0, err
    assert out.splitlines() == ["email: delivered", "webhook: delivered"]
    (got,) = smtp.received
    assert got.recipients == ["admin@example.com", "ops@example.com"]
    assert "test alert" in got.message["Subject"]
    assert hook.posts[0]["kind"] == "test"
    assert hook.paths == ["/hook?token=QUERYSECRET"]


async def test_alerts_test_says_which_channel_failed_in_one_line(
    alert_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_SMTP_PORT", str(free_port()))  # nothing listens
    with hook_server() as hook:
        hook.status = 503
        monkeypatch.setenv("CONNECTOR_ALERT_WEBHOOK_URL", hook.url("/SECRETPATH?k=QUERYSECRET"))
        code, out, err = await asyncio.to_thread(run, "alerts", "test")
    assert code == 1
    email, webhook = out.splitlines()
    assert email.startswith("email: failed: the SMTP server 127.0.0.1:")
    assert "refused the connection" in email
    assert webhook == (
        f"webhook: failed: the alert webhook http://127.0.0.1:{hook.port} answered "
        "503 Service Unavailable"
    )
    assert "SECRET" not in out + err


def test_alerts_test_without_a_channel_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("alerts", "test")
    assert code == 1
    assert err.startswith("error: no alert channel configured")


def test_an_alert_email_without_smtp_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONNECTOR_ALERT_EMAIL", "admin@example.com")
    code, _, err = run("alerts", "test")
    assert code == 1
    assert err.startswith("error: CONNECTOR_ALERT_EMAIL is set, but no SMTP host configured")
    assert len(err.strip().splitlines()) == 1


def test_a_bad_alert_setting_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONNECTOR_ALERT_WEBHOOK_URL", "ftp://example.com/SECRETPATH")
    code, _, err = run("alerts", "test")
    assert code == 1
    assert "CONNECTOR_ALERT_WEBHOOK_URL" in err
    assert "SECRETPATH" not in err


async def test_alerts_list_shows_delivery_per_channel_and_inert_text(
    alert_env: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_ALERT_WEBHOOK_URL", "http://127.0.0.1:1/hook")
    store = await open_store(database_url, migrate=True)
    try:
        await raise_alert(store, Alert(AlertKind.DEAD_EVENT, "event 7", "died"), T0)
        sneaky = Alert(AlertKind.RULE_NOTIFY, "contact 9 \x1b[31mred[/red]", "x")
        await raise_alert(store, sneaky, T0)
        first, _ = await store.claim_alerts(5, timedelta(minutes=5), "t", T0, T0)
        await store.finish_alert(first.id, "t", T0, {"email": T0}, "webhook: down", T0)
    finally:
        await store.close()
    code, out, err = await asyncio.to_thread(run, "alerts", "list", "--limit", "5")
    assert code == 0, err
    assert "\x1b" not in out
    assert "contact 9 \\x1b[31mred[/red]" in out
    assert "email sent 09:00, webhook pending" in out
    assert "webhook: down" in out
    assert "dead_event" in out
    assert "rule_notify" in out
    code, out, _ = await asyncio.to_thread(run, "alerts", "list", "--limit", "1")
    assert "rule_notify" in out
    assert "dead_event" not in out
