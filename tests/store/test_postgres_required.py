"""No run passes without PostgreSQL, and none needs one started beforehand: these tests show it.

The PostgreSQL half of the suite comes from the ``database_url`` / ``postgres_url`` fixtures, on
the server of ``postgres_server``: ``TEST_POSTGRES_URL`` when set, else a throwaway server the
suite starts itself (``tests/throwaway_postgres.py``). If that server is down or cannot start,
the tests error (``pytest.fail``), never skip, so the run fails. Here: the server the tests use
answers, the PostgreSQL variants are really collected, a run with ``TEST_POSTGRES_URL`` unset
starts its own server and removes it at the end, and a run pointed at a dead server ends in
errors, not skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).parents[2]
DEAD_SERVER = "postgresql://postgres@127.0.0.1:1/test"


def nested_pytest(
    *args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_postgresql_server_of_the_tests_answers(postgres_server: str) -> None:
    with psycopg.connect(postgres_server, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    assert int(str(row[0]).split(".")[0]) >= 13


def test_every_store_test_is_collected_for_postgresql_too() -> None:
    collected = nested_pytest("--collect-only", "tests/store/test_store.py").stdout
    sqlite = len(re.findall(r"\[sqlite[\]-]", collected))
    postgresql = len(re.findall(r"\[postgresql[\]-]", collected))
    assert sqlite > 10
    assert postgresql >= sqlite


def test_a_dead_server_makes_the_run_fail_not_skip() -> None:
    node = "tests/store/test_pacing_store.py::test_timelines_are_independent"
    result = nested_pytest("-rA", node, env={"TEST_POSTGRES_URL": DEAD_SERVER})
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 1, result.stdout
    assert re.search(r"\b1 passed\b", summary), summary
    assert re.search(r"\b1 error\b", summary), summary
    assert "skipped" not in summary
    assert "is not reachable" in result.stdout


def test_without_test_postgres_url_the_suite_starts_and_removes_a_server_of_its_own() -> None:
    node = "tests/store/test_postgres_required.py::test_the_postgresql_server_of_the_tests_answers"
    result = nested_pytest(node, unset=("TEST_POSTGRES_URL",))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b1 passed\b", result.stdout.strip().splitlines()[-1])
    used = re.search(
        r"postgresql: throwaway server .* at 127\.0\.0\.1:(\d+)/\S+ in (\S+), "
        r"started in [\d.]+ s, (.+)",
        result.stdout,
    )
    assert used is not None, result.stdout
    port, directory, end = int(used[1]), Path(used[2]), used[3]
    assert end == "stopped and deleted"
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)
