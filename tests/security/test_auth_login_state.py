"""Issue 13 item 10: ``auth login --code`` checks the OAuth ``state`` of a login we started.

A bare code (or a redirect URL without ``state``) with no login started could be anyone's code:
it is refused before Keap is asked, with one line and exit 1. With a started login, the bare
code is taken (the user pasted what our own URL led to), and a URL's ``state`` must match.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from connector.config import Settings
from connector.errors import AuthFlowError
from connector.keap import auth
from tests.cli.runner import run
from tests.keap.fakes import CLIENT_ID, CLIENT_SECRET, FakeTokenServer, InMemoryTokenStore

REDIRECT = "https://connector.example.com/oauth/callback"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        keap_client_id=CLIENT_ID, keap_client_secret=CLIENT_SECRET, keap_redirect_uri=REDIRECT
    )


@pytest.mark.parametrize("answer", ["c0de12345", f"{REDIRECT}?code=c0de12345"])
async def test_item10_a_code_without_a_started_login_is_refused(
    settings: Settings, answer: str
) -> None:
    server, store = FakeTokenServer(), InMemoryTokenStore()
    with pytest.raises(AuthFlowError, match="no login was started"):
        await auth.complete_login(settings, store, answer, adapter=server)
    assert server.requests == [], "Keap was never asked to exchange the code"
    assert store.token is None


async def test_item10_a_started_login_takes_its_bare_code_or_its_own_url(
    settings: Settings,
) -> None:
    server, store = FakeTokenServer(), InMemoryTokenStore()
    await auth.begin_login(settings, store)
    assert (await auth.complete_login(settings, store, server.valid_code, adapter=server)).logged_in

    url = await auth.begin_login(settings, store)
    state = parse_qs(urlsplit(url).query)["state"][0]
    answer = f"{REDIRECT}?code={server.valid_code}&state={state}"
    assert (await auth.complete_login(settings, store, answer, adapter=server)).logged_in


def test_item10_cli_bare_code_with_no_login_started_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db = tmp_path_factory.mktemp("db") / "connector.db"
    for name, value in {
        "KEAP_CLIENT_ID": CLIENT_ID,
        "KEAP_CLIENT_SECRET": CLIENT_SECRET,
        "KEAP_REDIRECT_URI": REDIRECT,
        "KEAP_TOKEN_URL": "http://127.0.0.1:9/token",  # never reached
        "CONNECTOR_DATABASE_URL": f"sqlite:///{db}",
    }.items():
        monkeypatch.setenv(name, value)
    assert run("db", "migrate")[0] == 0
    code, out, err = run("auth", "login", "--code", "c0de12345")
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "no login was started" in err
    assert "Traceback" not in err
