"""Issue 18: an OAuth2 login through the connector's own redirect route, against the sandbox's
authorization page, with no copy and paste; a missing or wrong ``state`` is refused."""

from __future__ import annotations

import asyncio
import re
import subprocess
from html import unescape

import httpx
import pytest

from connector.demo import free_port
from connector.sandbox import RunningSandbox
from connector.store import open_store
from tests.fixtures_connector import Connector, Serve

pytestmark = pytest.mark.slow


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def oauth(connector: Connector, sandbox: RunningSandbox, port: int) -> Connector:
    connector.env.pop("KEAP_API_KEY", None)
    connector.env.update(sandbox.env(oauth=True))
    connector.env.pop("KEAP_API_KEY", None)
    connector.env["KEAP_REDIRECT_URI"] = f"http://127.0.0.1:{port}/oauth/callback"
    return connector


def stored_token(connector: Connector) -> object:
    async def read() -> object:
        store = await open_store(connector.database_url)
        try:
            return await store.load_token()
        finally:
            await store.close()

    return asyncio.run(read())


def start_login(connector: Connector) -> tuple[subprocess.Popen[str], str]:
    """``connector auth login`` in the background, and the URL it prints."""
    process = subprocess.Popen(
        [*connector.argv, "auth", "login", "--wait", "90"],
        cwd=connector.workdir,
        env=connector.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(20):  # the URL is among the first lines
        line = process.stdout.readline()
        if line.strip().startswith("http"):
            return process, line.strip()
        assert line, process.stderr.read() if process.stderr else "no output"
    raise AssertionError("auth login printed no URL")


def allow(url: str) -> httpx.Response:
    """What the user does in the browser: open the URL, click Allow, follow Keap's redirect."""
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200, page.text
    found = re.search(r'id="allow" href="([^"]+)"', page.text)
    assert found, page.text
    return httpx.get(httpx.URL(url).join(unescape(found.group(1))), follow_redirects=True)


def test_login_through_the_connectors_redirect_route(
    oauth: Connector, sandbox: RunningSandbox, port: int
) -> None:
    served = oauth.serve(port=port)
    process, url = start_login(oauth)
    assert f"redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Foauth%2Fcallback" in url

    landed = allow(url)

    assert landed.url.path == "/oauth/callback"
    assert landed.status_code == 200, landed.text
    assert "Connected to Keap" in landed.text
    assert landed.headers["cache-control"] == "no-store"
    assert landed.headers["referrer-policy"] == "no-referrer"
    code = landed.url.params["code"]
    for secret in (code, sandbox.client_secret):
        assert secret not in landed.text
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "logged in: OAuth2 access token valid until" in out
    assert stored_token(oauth) is not None
    assert oauth.run("auth", "status").returncode == 0
    assert code not in served.log.read_text()
    assert sandbox.client_secret not in out + err + served.log.read_text()


def _callback(served: Serve, query: str) -> httpx.Response:
    return httpx.get(f"{served.url}/oauth/callback{query}", timeout=30)


def test_a_wrong_or_missing_state_is_refused_and_nothing_stored(
    oauth: Connector, sandbox: RunningSandbox, port: int
) -> None:
    served = oauth.serve(port=port)
    redirect = oauth.env["KEAP_REDIRECT_URI"]

    no_login = _callback(served, f"?code={sandbox.mint_code(redirect)}&state=anything")
    assert no_login.status_code == 400
    assert "Login refused" in no_login.text

    process, url = start_login(oauth)
    for query in (
        f"?code={sandbox.mint_code(redirect)}&state=forged",
        f"?code={sandbox.mint_code(redirect)}",
        "?state=%3Cscript%3Ealert(1)%3C%2Fscript%3E&code=x",
    ):
        refused = _callback(served, query)
        assert refused.status_code == 400, query
        assert "Nothing was stored" in refused.text
        assert "<script>" not in refused.text
        assert stored_token(oauth) is None
    assert process.poll() is None, "the started login is still waiting"

    landed = allow(url)  # the real login, started before the forgeries, still completes
    assert landed.status_code == 200, landed.text
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "logged in" in out
    assert stored_token(oauth) is not None

    again = _callback(served, "?" + landed.url.query.decode())  # the redirect, replayed
    assert again.status_code == 400


def test_code_from_another_terminal_ends_the_wait(
    oauth: Connector, sandbox: RunningSandbox, port: int
) -> None:
    process, _ = start_login(oauth)
    code = sandbox.mint_code(oauth.env["KEAP_REDIRECT_URI"])
    finished = oauth.run("auth", "login", "--code", code)
    assert finished.returncode == 0, finished.stderr
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "logged in" in out
