"""Commands that process events refuse a database whose schema is not up to date.

Run as a user runs them (``python -m connector ...`` in a process of its own) on both backends:
on a fresh database and on one an upgrade left a migration behind (the usual case when a new
release adds one, as ``0005_rate_limits`` did). The message must say what to run.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import psycopg
import pytest

from connector.store import open_store
from connector.store.migrations import MIGRATIONS

COMMANDS = [
    ("serve", "--port", "1"),
    ("serve", "--no-worker", "--port", "1"),
    ("worker",),
    ("sync",),
]


def connector(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
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


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_commands_refuse_a_fresh_database(database_url: str, command: tuple[str, ...]) -> None:
    assert_refused(connector(database_url, *command), MIGRATIONS[0].name)


async def roll_back_last_migration(url: str) -> None:
    """The database as the previous release left it: every migration but the newest."""
    store = await open_store(url, migrate=True)
    await store.close()
    newest = MIGRATIONS[-1].name
    assert newest == "0005_rate_limits", "update this test's undo for the new migration"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
        with conn:
            conn.execute("DROP TABLE rate_limits")
            conn.execute("DELETE FROM schema_migrations WHERE name = ?", (newest,))
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE rate_limits")
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (newest,))


@pytest.mark.parametrize(
    "command", [("serve", "--port", "1"), ("worker",), ("sync",)], ids=" ".join
)
async def test_commands_refuse_a_database_one_migration_behind_until_migrated(
    database_url: str, command: tuple[str, ...]
) -> None:
    await roll_back_last_migration(database_url)

    assert_refused(connector(database_url, *command), "0005_rate_limits")

    status = connector(database_url, "db", "status")
    assert "0005_rate_limits" in status.stdout + status.stderr
    migrated = connector(database_url, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    store = await open_store(database_url)
    assert await store.pending_migrations() == []
    assert await store.reserve_send_slots("keap", 1, 1.0) > 0
    await store.close()
