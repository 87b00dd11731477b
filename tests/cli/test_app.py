"""The command line: one line on stderr and a non-zero exit for every error, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_commands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in ("serve", "worker", "auth", "policy", "events", "audit", "undo", "db"):
        assert command in out


def test_bad_setting_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "KEAP_REQUESTS_PER_SECOND": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "connector", "db", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "KEAP_REQUESTS_PER_SECOND" in lines[0]
    assert "Traceback" not in done.stderr


def test_policy_init_check_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_POLICY_FILE", str(tmp_path / "policy.toml"))
    code, out, _ = run("policy", "init")
    assert code == 0
    assert (tmp_path / "policy.toml").exists()
    code, _, err = run("policy", "init")
    assert code == 1
    assert "--force" in err
    assert run("policy", "init", "--force")[0] == 0
    code, out, _ = run("policy", "check")
    assert code == 0
    assert "opt_out" in out
    code, out, _ = run("policy", "show")
    assert code == 0
    assert "Third Strike" in out


def test_policy_check_reports_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rule]]\nbounce = "nope"\nadd_tags = ["x"]\n\n'
        '[[rule]]\nbounce = "hard_bounce"\nwhen = "sometimes"\nadd_tags = ["y"]\n'
    )
    code, _, err = run("policy", "check", str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) >= 2
    assert any("rule 1" in line and "nope" in line for line in lines)
    assert any("rule 2" in line and "when" in line for line in lines)


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


def test_events_retry_needs_an_id_or_failed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    run("db", "migrate")
    code, _, err = run("events", "retry")
    assert code == 1
    assert "--failed" in err
    code, _, err = run("events", "retry", "99")
    assert code == 1
    assert "no event 99" in err
    code, _, err = run("events", "show", "99")
    assert code == 1


def test_serve_refuses_without_secret(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    code, _, err = run("serve")
    assert code == 1
    assert "CONNECTOR_WEBHOOK_SECRET" in err
