"""Fixtures that run the real ``connector`` command as separate processes against the sandbox.

Used by the end-to-end, reliability and security tests: a migrated install in a temporary
directory, ``connector serve`` processes, and every byte the processes printed.

The install's store is ``connector_database_url``. Here that is a SQLite file, the default the
reliability matrix relies on (some of its rows read that file directly); ``tests/e2e/conftest.py``
and ``tests/test_security.py`` override it with ``database_url``, so the end-to-end and security
tests run once on SQLite and once on a PostgreSQL schema of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from connector.demo import free_port
from connector.sandbox import RunningSandbox
from connector.store import Event, EventStatus, open_store
from tests.fixtures_store import is_sqlite

WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"


@dataclass
class Serve:
    """One running ``connector serve`` process."""

    process: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(
        self,
        path: str,
        body: str | bytes,
        key: str | None = WEBHOOK_SECRET,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST as Keap does: a form body, the key in the query (``key=None`` leaves it out)."""
        return httpx.post(
            f"{self.url}{path}",
            params=None if key is None else {"key": key},
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})},
            timeout=30,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Connector:
    """The connector as a user runs it: a working directory, settings, the CLI."""

    workdir: Path
    env: dict[str, str]
    servers: list[Serve] = field(default_factory=list)
    argv: list[str] = field(default_factory=lambda: [sys.executable, "-m", "connector"])
    outputs: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.env["CONNECTOR_DATABASE_URL"]

    @property
    def on_sqlite(self) -> bool:
        return is_sqlite(self.database_url)

    @property
    def database(self) -> Path:
        """The SQLite file of the install (only for an install on SQLite)."""
        assert self.on_sqlite, f"not a SQLite install: {self.database_url}"
        return Path(self.database_url.removeprefix("sqlite:///"))

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.argv, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def printed(self) -> str:
        """Everything every command and server of this install wrote to stdout and stderr."""
        logs = [s.log.read_text() for s in self.servers if s.log.exists()]
        return "\n".join([*self.outputs, *logs])

    def serve(self, *args: str, port: int | None = None) -> Serve:
        port = port or free_port()
        log = self.workdir / f"serve-{port}-{len(self.servers)}.log"
        process = subprocess.Popen(
            [*self.argv, "serve", "--port", str(port), *args],
            cwd=self.workdir,
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        served = Serve(process, port, log)
        self.servers.append(served)
        _wait_healthy(served)
        return served

    def events(self) -> list[Event]:
        async def read() -> list[Event]:
            store = await open_store(self.database_url)
            try:
                return await store.list_events(limit=1_000_000)
            finally:
                await store.close()

        return asyncio.run(read())

    def wait_until_settled(self, expected: int, timeout: float = 120) -> list[Event]:
        """Until ``expected`` events exist and none is queued, processing or failed."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            open_ = [e for e in events if e.status not in (EventStatus.DONE, EventStatus.DEAD)]
            if len(events) >= expected and not open_:
                return events
            if time.monotonic() > deadline:
                logs = "\n".join(s.log.read_text()[-3000:] for s in self.servers)
                raise AssertionError(
                    f"{len(events)} events, {len(open_)} still open after {timeout}s\n{logs}"
                )
            time.sleep(0.2)


def _wait_healthy(served: Serve, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{served.log.read_text()}")
        try:
            if httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not become healthy:\n{served.log.read_text()}")


@pytest.fixture
def connector_database_url(tmp_path: Path) -> str:
    """The ``connector`` fixture's store: a SQLite file unless a conftest or module overrides it."""
    return f"sqlite:///{tmp_path / 'connector.db'}"


@pytest.fixture
def connector(
    sandbox: RunningSandbox, tmp_path: Path, connector_database_url: str
) -> Iterator[Connector]:
    """A migrated connector install pointed at the sandbox with an API key."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))},
        **sandbox.env(),
        "CONNECTOR_DATABASE_URL": connector_database_url,
        "CONNECTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "KEAP_REQUESTS_PER_SECOND": "100",
        "KEAP_MAX_RETRY_SECONDS": "5",
    }
    installed = Connector(tmp_path, env)
    migrated = installed.run("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    yield installed
    for served in installed.servers:
        served.stop()
