"""Which store the commands open (DESIGN 5), on both backends.

``serve``, ``worker`` and ``sync`` create the schema of a brand-new, empty store themselves, so a
fresh install needs no ``db migrate`` first. A store that has tables but pending migrations
(the usual case when a new release adds one, as ``0006_audit_reason`` did) is refused with the
command that fixes it: an existing store is never upgraded behind the operator's back. Commands
that only read (``events``, ``audit``) keep refusing a store without its schema.

The commands run as a user runs them (``python -m connector ...`` in a process of its own).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from connector.errors import StoreUnavailableError
from connector.sandbox import RunningSandbox
from connector.store import open_store
from connector.store.migrations import MIGRATIONS
from tests.fixtures_connector import WEBHOOK_SECRET, Connector
from tests.fixtures_store import is_sqlite, schema_url

NEWEST = "0008_incidents_and_due_steps"


def connector(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command that must stop at the store check: Keap is unreachable on purpose."""
    env = {
        "PATH": "",
        "CONNECTOR_DATABASE_URL": database_url,
        "CONNECTOR_WEBHOOK_SECRET": "startup-check-secret-0123456789",
        "KEAP_API_KEY": "startup-check-key",
        "KEAP_API_BASE_URL": "http://127.0.0.1:1/crm",
    }
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess[str], pending: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "pending migration" in result.stderr, result.stderr
    assert pending in result.stderr
    assert "connector db migrate" in result.stderr
    assert "Traceback" not in result.stderr


async def pending_migrations(url: str) -> list[str]:
    store = await open_store(url, check=False)
    try:
        return await store.pending_migrations()
    finally:
        await store.close()


# --- a brand-new store is created by the commands that process events ---------------------------


@pytest.fixture
def install(sandbox: RunningSandbox, tmp_path: Path, database_url: str) -> Iterator[Connector]:
    """A connector pointed at the sandbox and at a store location nothing has touched yet."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))},
        **sandbox.env(),
        "CONNECTOR_DATABASE_URL": database_url,
        "CONNECTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    installed = Connector(tmp_path, env)
    yield installed
    for served in installed.servers:
        served.stop()


@pytest.mark.parametrize(
    "command", [("serve",), ("serve", "--no-worker"), ("worker", "--once"), ("sync",)], ids=" ".join
)
def test_a_brand_new_store_is_created_by_serve_worker_and_sync(
    install: Connector, database_url: str, command: tuple[str, ...]
) -> None:
    if is_sqlite(database_url):
        assert not install.database.exists(), "the test needs a brand-new SQLite file"
    if command[0] == "serve":
        served = install.serve(*command[1:])  # waits until /healthz answers
        served.stop()
    else:
        result = install.run(*command)
        assert result.returncode == 0, result.stderr
    assert "Traceback" not in install.printed()
    assert asyncio.run(pending_migrations(database_url)) == []


async def test_an_empty_sqlite_file_is_created(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    store = await open_store(f"sqlite:///{empty}", create_if_empty=True)
    try:
        assert await store.pending_migrations() == []
        assert not await store.is_empty()
    finally:
        await store.close()


async def test_an_existing_empty_postgres_schema_is_created(
    postgres_server: str, postgres_schema: str
) -> None:
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(postgres_schema)))
    url = schema_url(postgres_server, postgres_schema)
    store = await open_store(url, create_if_empty=True)
    try:
        assert await store.pending_migrations() == []
    finally:
        await store.close()


async def test_a_postgres_schema_holding_other_tables_is_not_taken_over(
    postgres_server: str, postgres_schema: str
) -> None:
    """Tables the connector did not make: not a brand-new store, so nothing is created."""
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(postgres_schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {}.unrelated (id int)").format(sql.Identifier(postgres_schema))
        )
    url = schema_url(postgres_server, postgres_schema)
    with pytest.raises(StoreUnavailableError, match="pending migration") as info:
        await open_store(url, create_if_empty=True)
    assert "connector db migrate" in info.value.hint
    assert len(await pending_migrations(url)) == len(MIGRATIONS)


@pytest.mark.parametrize("command", [("events", "list"), ("audit",)], ids=" ".join)
def test_read_only_commands_still_refuse_a_fresh_database(
    database_url: str, command: tuple[str, ...]
) -> None:
    assert_refused(connector(database_url, *command), MIGRATIONS[0].name)


# --- an existing store one migration behind is refused until migrated -----------------------------


async def roll_back_last_migration(url: str) -> None:
    """The database as the previous release left it: every migration but the newest."""
    store = await open_store(url, migrate=True)
    await store.close()
    assert MIGRATIONS[-1].name == NEWEST, "update this test's undo for the new migration"
    undo = (
        "DROP TABLE incidents",
        "DROP TABLE incident_bounces",
        "DROP INDEX audit_due",
        "ALTER TABLE audit DROP COLUMN due_at",
    )
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
        with conn:
            for statement in undo:
                conn.execute(statement)
            conn.execute("DELETE FROM schema_migrations WHERE name = ?", (NEWEST,))
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        for statement in undo:
            pg.execute(statement)
        pg.execute("DELETE FROM schema_migrations WHERE name = %s", (NEWEST,))


async def test_open_store_refuses_a_store_one_migration_behind_even_when_asked_to_create(
    database_url: str,
) -> None:
    await roll_back_last_migration(database_url)
    with pytest.raises(StoreUnavailableError, match=NEWEST) as info:
        await open_store(database_url, create_if_empty=True)
    assert "connector db migrate" in info.value.hint


@pytest.mark.parametrize(
    "command", [("serve", "--port", "1"), ("worker",), ("sync",)], ids=" ".join
)
async def test_commands_refuse_a_database_one_migration_behind_until_migrated(
    database_url: str, command: tuple[str, ...]
) -> None:
    await roll_back_last_migration(database_url)

    assert_refused(connector(database_url, *command), NEWEST)

    status = connector(database_url, "db", "status")
    assert NEWEST in status.stdout + status.stderr
    migrated = connector(database_url, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    store = await open_store(database_url)
    assert await store.pending_migrations() == []
    assert await store.reserve_send_slots("keap", 1, 1.0) > 0
    await store.close()
