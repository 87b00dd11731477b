"""Issue 13, item 15: every start-up error of ``serve`` is one line, a non-zero exit, no banner.

``serve`` printed its URL banner before failing on a missing secret, and a ~60-line uvicorn
traceback when its port was taken. The banner now comes only once the port is listening.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BANNER = "Keap HTTP Post URL"


def run_serve(workdir: Path, port: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))}
    return subprocess.run(
        [sys.executable, "-m", "connector", "serve", "--port", str(port), "--no-worker"],
        cwd=workdir,
        env={
            **clean,
            "CONNECTOR_DATABASE_URL": f"sqlite:///{workdir / 'connector.db'}",
            "KEAP_API_KEY": "startup-test-key-0123",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port the test holds, listening, so ``serve`` cannot bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def assert_one_error_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert BANNER not in done.stderr + done.stdout, "no banner for a server that never listened"
    assert "Traceback" not in done.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert lines == errors, f"only the error line: {lines}"
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def test_issue13_item15_missing_secret_is_one_line_and_no_banner(
    tmp_path: Path, held_port: int
) -> None:
    done = run_serve(tmp_path, held_port)
    assert_one_error_line(done, "CONNECTOR_WEBHOOK_SECRET")


def test_issue13_item15_port_taken_is_one_line_not_a_traceback(
    tmp_path: Path, held_port: int
) -> None:
    done = run_serve(tmp_path, held_port, CONNECTOR_WEBHOOK_SECRET="startup-secret-0123456")
    line = assert_one_error_line(done, str(held_port))
    assert "in use" in line


def test_issue13_item15_a_bad_host_is_one_line(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))}
    done = subprocess.run(
        [sys.executable, "-m", "connector", "serve", "--host", "256.1.1.1", "--no-worker"],
        cwd=tmp_path,
        env={
            **clean,
            "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'connector.db'}",
            "KEAP_API_KEY": "startup-test-key-0123",
            "CONNECTOR_WEBHOOK_SECRET": "startup-secret-0123456",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_error_line(done, "256.1.1.1")
