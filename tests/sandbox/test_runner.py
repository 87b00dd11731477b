from __future__ import annotations

import io
import threading
import time

import httpx
import pytest

from connector.errors import InputError
from connector.sandbox import RunningSandbox, SandboxOptions, describe, run_sandbox, start_sandbox
from tests.fixtures_sandbox import SandboxFactory


def test_urls_and_env_point_at_the_sandbox(sandbox: RunningSandbox) -> None:
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}/crm"
    assert sandbox.env()["KEAP_API_KEY"] == sandbox.api_key
    oauth = sandbox.env(oauth=True)
    assert oauth["KEAP_CLIENT_SECRET"] == sandbox.client_secret
    assert oauth["KEAP_TOKEN_URL"] == sandbox.token_url
    assert "KEAP_API_KEY" not in oauth
    banner = describe(sandbox)
    assert f"KEAP_API_BASE_URL={sandbox.base_url}" in banner
    assert sandbox.client_secret in banner


def test_fixed_credentials_are_used(sandbox_factory: SandboxFactory) -> None:
    running = sandbox_factory(api_key="k-1", client_id="c", client_secret="s")
    assert (running.api_key, running.client_id, running.client_secret) == ("k-1", "c", "s")


def test_stop_closes_idle_keep_alive_connections(sandbox_factory: SandboxFactory) -> None:
    running = sandbox_factory()
    client = httpx.Client(headers={"X-Keap-API-Key": running.api_key})
    assert client.get(f"{running.base_url}/rest/v2/users").status_code == 200
    running.stop()
    assert not running.thread.is_alive()
    with pytest.raises(httpx.TransportError):
        client.get(f"{running.base_url}/rest/v2/users")
    client.close()


def test_run_sandbox_prints_the_banner_and_stops_on_request() -> None:
    out, stop = io.StringIO(), threading.Event()
    options = SandboxOptions(contacts=10)
    worker = threading.Thread(target=run_sandbox, args=(options, out, stop))
    worker.start()
    deadline = time.monotonic() + 20
    while "Press Ctrl-C" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert "KEAP_API_KEY=" in out.getvalue()
    assert "KEAP_CLIENT_ID=" in out.getvalue()


def test_busy_port_and_bad_options_are_input_errors(sandbox: RunningSandbox) -> None:
    with pytest.raises(InputError, match="cannot listen"):
        start_sandbox(SandboxOptions(contacts=1, port=sandbox.port))
    with pytest.raises(InputError, match="bounced-fraction"):
        start_sandbox(SandboxOptions(bounced_fraction=2.0))
