"""The command line as a whole: one line on stderr and a non-zero exit for every error, never a
traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.runner import run


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
