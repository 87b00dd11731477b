"""``.ci/run`` cannot pass without PostgreSQL: these tests make that guarantee explicit.

The PostgreSQL half of the suite comes from the ``database_url`` / ``postgres_url`` fixtures. If
the server is down they error (``pytest.fail`` in ``postgres_server``), never skip, so the run
fails. Here: the server the tests use answers, the PostgreSQL variants are really collected, and
a run pointed at a dead server ends in errors, not skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).parents[2]
DEAD_SERVER = "postgresql://postgres@127.0.0.1:1/test"


def nested_pytest(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
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
