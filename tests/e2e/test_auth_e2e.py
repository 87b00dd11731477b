"""``connector auth`` as a user runs it, against the sandbox's OAuth2 token endpoint."""

from __future__ import annotations

import pytest

from connector.sandbox import RunningSandbox
from connector.store import EventStatus
from tests.fixtures_connector import Connector

pytestmark = pytest.mark.slow


@pytest.fixture
def oauth(connector: Connector, sandbox: RunningSandbox) -> Connector:
    for name in ("KEAP_API_KEY",):
        connector.env.pop(name, None)
    connector.env.update(sandbox.env(oauth=True))
    connector.env.pop("KEAP_API_KEY", None)
    return connector


def test_login_status_refresh_logout(oauth: Connector, sandbox: RunningSandbox) -> None:
    assert oauth.run("auth", "status").returncode == 1, "not logged in yet"
    assert oauth.run("auth", "login", "--print-url").returncode == 0
    code = sandbox.mint_code()
    login = oauth.run("auth", "login", "--code", f"{sandbox.redirect_uri}?code={code}")
    assert login.returncode == 0, login.stderr
    assert "logged in" in login.stdout
    status = oauth.run("auth", "status")
    assert status.returncode == 0
    assert "valid until" in status.stdout
    refreshed = oauth.run("auth", "refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert sandbox.stats()["refreshes"] == 1
    for output in (login, status, refreshed):
        assert sandbox.client_secret not in output.stdout + output.stderr
        assert "Bearer" not in output.stdout + output.stderr
    assert oauth.run("auth", "logout").returncode == 0
    assert oauth.run("auth", "status").returncode == 1


def test_a_wrong_state_is_refused(oauth: Connector, sandbox: RunningSandbox) -> None:
    code = sandbox.mint_code()
    answer = f"{sandbox.redirect_uri}?code={code}&state=forged"
    refused = oauth.run("auth", "login", "--code", answer)
    assert refused.returncode == 1
    assert "state" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_worker_refreshes_an_expired_token_and_remediates(
    oauth: Connector, sandbox: RunningSandbox
) -> None:
    assert oauth.run("auth", "login", "--print-url").returncode == 0
    assert oauth.run("auth", "login", "--code", sandbox.mint_code()).returncode == 0
    sandbox.expire_access_tokens()
    served = oauth.serve()
    contact = sandbox.state.contact_ids[0]
    assert served.post("/keap/bounce/hard_bounce", f"contactId={contact}").status_code == 202
    (event,) = oauth.wait_until_settled(1)
    assert event.status is EventStatus.DONE, event.last_error
    assert sandbox.stats()["refreshes"] == 1


def test_revoked_grant_keeps_events_until_login(oauth: Connector, sandbox: RunningSandbox) -> None:
    assert oauth.run("auth", "login", "--print-url").returncode == 0
    assert oauth.run("auth", "login", "--code", sandbox.mint_code()).returncode == 0
    sandbox.revoke_grant()
    sandbox.expire_access_tokens()
    contact = sandbox.state.contact_ids[0]
    served = oauth.serve()
    assert served.post("/keap/bounce/hard_bounce", f"contactId={contact}").status_code == 202
    once = oauth.run("worker", "--once")
    assert once.returncode == 0, once.stderr
    (event,) = oauth.events()
    assert event.status is not EventStatus.DEAD
    assert "auth login" in (event.last_error or "")
    assert oauth.run("auth", "login", "--print-url").returncode == 0
    assert oauth.run("auth", "login", "--code", sandbox.mint_code()).returncode == 0
    (event,) = oauth.wait_until_settled(1, timeout=90)
    assert event.status is EventStatus.DONE
