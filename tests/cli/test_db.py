"""``connector db`` and the hint every command gives on an unmigrated store."""

from __future__ import annotations

import pytest

from tests.cli.runner import run


def test_db_migrate_and_status(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    code, out, err = run("db", "status")
    assert code == 1
    assert "pending" in out
    assert "connector db migrate" in err
    code, out, _ = run("db", "migrate")
    assert code == 0
    assert "applied" in out
    code, out, _ = run("db", "status")
    assert code == 0
    assert "pending" not in out
    assert run("db", "migrate")[1].strip() == "up to date"


def test_commands_on_unmigrated_store_say_what_to_run(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    code, _, err = run("events", "list")
    assert code == 1
    assert "connector db migrate" in err
