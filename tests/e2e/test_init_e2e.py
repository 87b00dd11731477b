"""Issue 18: ``connector init`` in an empty directory against the sandbox, then ``serve``, a
callback and ``doctor``; flags (API key and OAuth2) and a real terminal driving the prompts."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from html import unescape
from pathlib import Path

import httpx
import pexpect
import pytest
from dotenv import dotenv_values

from connector.demo import free_port
from connector.sandbox import RunningSandbox
from connector.store import EventStatus
from tests.fixtures_connector import Connector

pytestmark = pytest.mark.slow

PUBLIC = "https://bounces.example.com"
PROXIED = {"X-Forwarded-Proto": "https"}  # what the proxy in deploy/ adds


class Installed(Connector):
    """An install whose settings are only in its ``.env`` (the environment has none)."""

    @property
    def database_url(self) -> str:
        return str(dotenv_values(self.workdir / ".env")["CONNECTOR_DATABASE_URL"])


def base_env(sandbox: RunningSandbox) -> dict[str, str]:
    """A clean environment that only says where Keap is (the sandbox); no credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))}
    env.update({k: v for k, v in sandbox.env().items() if k != "KEAP_API_KEY"})
    env["KEAP_REQUESTS_PER_SECOND"] = "100"
    return env


def init(
    directory: Path, env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "init", "--dir", str(directory), *args],
        cwd=cwd or directory.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_install(directory: Path) -> None:
    assert mode(directory) == 0o700
    for name in (".env", "connector.db", "policy.toml"):
        assert mode(directory / name) == 0o600, name
    assert not list(directory.glob(".*.tmp")), "no temporary settings file left"


def checks(output: str) -> list[tuple[str, str]]:
    """The doctor lines of an output (status, name)."""
    return re.findall(r"^(ok|warn|FAIL) +(\S.*?)  ", output, flags=re.MULTILINE)


def test_init_with_an_api_key_then_serve_callback_and_doctor(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    directory = tmp_path / "state"
    env = base_env(sandbox)

    done = init(
        directory, env, "--non-interactive", "--api-key", sandbox.api_key, "--public-url", PUBLIC
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert_private_install(directory)
    settings = dotenv_values(directory / ".env")
    assert settings["KEAP_API_KEY"] == sandbox.api_key
    assert settings["CONNECTOR_PUBLIC_URL"] == PUBLIC
    assert settings["CONNECTOR_REQUIRE_HTTPS"] == "true"
    secret = settings["CONNECTOR_WEBHOOK_SECRET"]
    assert secret is not None
    assert len(secret) >= 40
    assert secret not in done.stdout + done.stderr
    assert sandbox.api_key not in done.stdout + done.stderr
    assert all(status == "ok" for status, _ in checks(done.stdout)), done.stdout
    assert "keap credentials" in done.stdout
    assert "When an email bounces" in done.stdout  # the setup sheet
    assert f"{PUBLIC}/keap/bounce/hard_bounce?key=" in done.stdout
    assert "Next:" in done.stdout

    installed = Installed(directory, env)  # settings come from .env in the working directory
    try:
        served = installed.serve()
        contact = sandbox.state.contact_ids[0]
        plain = served.post("/keap/bounce/hard_bounce", f"contactId={contact}", key=secret)
        assert plain.status_code == 403, "CONNECTOR_REQUIRE_HTTPS: plain http is refused"
        proxied = served.post(
            "/keap/bounce/hard_bounce", f"contactId={contact}", key=secret, headers=PROXIED
        )
        assert proxied.status_code == 202, proxied.text
        (event,) = installed.wait_until_settled(1)
        assert event.status is EventStatus.DONE, event.last_error
    finally:
        for served in installed.servers:
            served.stop()

    doctor = installed.run("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert checks(doctor.stdout)
    assert all(status == "ok" for status, _ in checks(doctor.stdout)), doctor.stdout

    before = (directory / ".env").read_bytes()
    again = init(directory, env, "--non-interactive")  # nothing given: nothing asked, all kept
    assert again.returncode == 0, again.stdout + again.stderr
    assert (directory / ".env").read_bytes() == before
    other = init(directory, env, "--non-interactive", "--api-key", "another-key")
    assert "KEAP_API_KEY = (secret, not shown) [kept, not replaced]" in other.stdout
    assert dotenv_values(directory / ".env")["KEAP_API_KEY"] == sandbox.api_key
    assert_private_install(directory)


def test_init_with_oauth_then_serve_login_callback_and_doctor(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    directory = tmp_path / "state"
    env = base_env(sandbox)
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/oauth/callback"

    done = init(
        directory,
        env,
        "--non-interactive",
        "--client-id",
        sandbox.client_id,
        "--client-secret",
        sandbox.client_secret,
        "--public-url",
        PUBLIC,
        "--redirect-uri",
        redirect,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert_private_install(directory)
    assert sandbox.client_secret not in done.stdout + done.stderr
    assert ("FAIL", "oauth token") in checks(done.stdout), "not signed in yet, and it says so"
    found = re.search(r"sign in to Keap: open (\S+)", done.stdout)
    assert found, done.stdout
    login_url = found.group(1)

    installed = Installed(directory, env)
    try:
        served = installed.serve(port=port)
        page = httpx.get(login_url, timeout=30)
        allow = re.search(r'id="allow" href="([^"]+)"', page.text)
        assert allow, page.text
        sent_back = httpx.get(httpx.URL(login_url).join(unescape(allow.group(1))), timeout=30)
        assert sent_back.status_code == 302
        location = sent_back.headers["location"]
        assert location.startswith(redirect)
        # Keap sends the browser to the public HTTPS address; the proxy says so to `serve`.
        landed = httpx.get(location, headers=PROXIED, timeout=30)
        assert landed.status_code == 200, landed.text
        assert "Connected to Keap" in landed.text
        secret = dotenv_values(directory / ".env")["CONNECTOR_WEBHOOK_SECRET"]
        contact = sandbox.state.contact_ids[0]
        posted = served.post(
            "/keap/bounce/hard_bounce", f"contactId={contact}", key=secret, headers=PROXIED
        )
        assert posted.status_code == 202, posted.text
        (event,) = installed.wait_until_settled(1)
        assert event.status is EventStatus.DONE, event.last_error
    finally:
        for served in installed.servers:
            served.stop()

    doctor = installed.run("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert ("ok", "oauth token") in checks(doctor.stdout)
    assert all(status == "ok" for status, _ in checks(doctor.stdout)), doctor.stdout

    again = init(directory, env, "--non-interactive")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sign in to Keap" not in again.stdout, "signed in: no new login is started"
    assert_private_install(directory)


def spawn_init(env: dict[str, str], cwd: Path, *args: str) -> pexpect.spawn[str]:
    return pexpect.spawn(
        sys.executable,
        ["-m", "connector", "init", *args],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(60, 250),
    )


def test_init_in_a_real_terminal_asks_each_question_once(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    directory = tmp_path / "state"
    env = base_env(sandbox)

    term = spawn_init(env, tmp_path)
    term.expect_exact("Where to keep settings, store and policy [/var/lib/keap-bounce-connector]:")
    term.sendline(str(directory))
    term.expect_exact("Keap credentials: api-key or oauth [api-key]:")
    term.sendline("")
    term.expect_exact("Service Account Key")
    term.expect_exact(":")
    term.sendline(sandbox.api_key)
    term.expect_exact("The public HTTPS address Keap will call (your reverse proxy):")
    term.sendline(PUBLIC)
    term.expect_exact("Next:")
    term.expect(pexpect.EOF)
    term.close()
    output = term.before or ""
    assert term.exitstatus == 0, output
    assert sandbox.api_key not in output, "the key was typed with echo off"
    assert_private_install(directory)
    assert dotenv_values(directory / ".env")["KEAP_API_KEY"] == sandbox.api_key

    before = (directory / ".env").read_bytes()
    rerun = spawn_init(env, tmp_path, "--dir", str(directory))
    rerun.expect_exact("Next:")  # no question before the end: everything is in .env already
    transcript = rerun.before or ""
    rerun.expect(pexpect.EOF)
    rerun.close()
    assert rerun.exitstatus == 0
    for question in ("Where to keep", "api-key or oauth", "Service Account Key", "Keap will call"):
        assert question not in transcript
    assert "replace it?" not in transcript
    assert (directory / ".env").read_bytes() == before

    changed = spawn_init(env, tmp_path, "--dir", str(directory), "--api-key", "another-key")
    changed.expect_exact("KEAP_API_KEY is already set in .env; replace it? [y/N]:")
    changed.sendline("n")
    changed.expect_exact("[kept, not replaced]")
    changed.expect(pexpect.EOF)
    changed.close()
    assert changed.exitstatus == 0
    assert (directory / ".env").read_bytes() == before
