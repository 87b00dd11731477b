"""``connector sync`` as a real process against the sandbox: interrupted by a signal, resumed.

The sync runs in its own process with a slow client-side rate so a signal reliably lands while
the scan is still going; the sandbox runs in the test. The reference is one clean run against an
identical sandbox (same seed and anchor): the interrupted run plus its resumption must leave
Keap exactly as that run did, with no note written twice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.sandbox import RunningSandbox, SandboxOptions
from tests.fixtures_sandbox import SandboxFactory

pytestmark = pytest.mark.slow

ANCHOR_MS = 1_767_225_600_000
ACCOUNT = SandboxOptions(
    contacts=5000,
    bounced_fraction=0.04,
    seed=23,
    requests_per_second=1000.0,
    data_anchor_ms=ANCHOR_MS,
)


def sync_command(*args: str) -> list[str]:
    """``connector sync`` exactly as a user runs it."""
    return [sys.executable, "-m", "connector", "sync", *args]


@dataclass
class Install:
    workdir: Path
    env: dict[str, str]
    sandbox: RunningSandbox

    @property
    def db(self) -> Path:
        return self.workdir / "connector.db"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            sync_command(*args),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            sync_command(*args),
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "connector", *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def checkpoint(self) -> dict[str, object] | None:
        with sqlite3.connect(self.db, timeout=30) as conn:
            row = conn.execute("SELECT data FROM sync_checkpoints WHERE name = 'sync'").fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def outcome(self) -> tuple[Counter[int], dict[int, set[str]], dict[str, str]]:
        state = self.sandbox.state
        notes = Counter(n.contact_id for n in state.notes.values())
        tags: dict[int, set[str]] = {}
        for tag in state.tags.values():
            for cid in tag.contacts:
                tags.setdefault(cid, set()).add(tag.name)
        return notes, tags, {k: a.status for k, a in state.addresses.items()}


def install(sandbox: RunningSandbox, workdir: Path, rate: str = "100") -> Install:
    workdir.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))},
        **sandbox.env(),
        "CONNECTOR_DATABASE_URL": f"sqlite:///{workdir / 'connector.db'}",
        "KEAP_REQUESTS_PER_SECOND": rate,
        "KEAP_MAX_RETRY_SECONDS": "5",
        "CONNECTOR_LEASE_SECONDS": "3",
    }
    made = Install(workdir, env, sandbox)
    migrated = made.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return made


def wait_for_page_token(made: Install, process: subprocess.Popen[str]) -> None:
    """Until a checkpoint past the first page is stored: the scan is under way, not over."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        saved = made.checkpoint() if made.db.exists() else None
        if saved and saved.get("page_token"):
            return
        time.sleep(0.05)
    raise AssertionError("the sync never stored a page checkpoint")


def assert_same(made: Install, clean: Install) -> None:
    got, want = made.outcome(), clean.outcome()
    for name, mine, theirs in zip(("notes", "tags", "statuses"), got, want, strict=True):
        keys = set(mine) | set(theirs)  # type: ignore[arg-type]
        differ = {k: (mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)}  # type: ignore[attr-defined]
        assert not differ, f"{name} differ from one clean run (got, want): {differ}"


@pytest.fixture
def clean(sandbox_factory: SandboxFactory, tmp_path: Path) -> Install:
    """One uninterrupted run: the reference outcome."""
    made = install(sandbox_factory(ACCOUNT), tmp_path / "clean")
    done = made.run()
    assert done.returncode == 0, done.stderr
    assert "sync complete" in done.stderr
    assert "0 to retry, 0 dead, 0 left queued" in done.stderr, done.stderr
    return made


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_page_and_the_resumed_run_finishes_it(
    sig: signal.Signals, clean: Install, sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    made = install(sandbox_factory(ACCOUNT), tmp_path / "cut", rate="8")
    process = made.start()
    wait_for_page_token(made, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "stopped early" in stderr
    saved = made.checkpoint()
    assert saved is not None
    assert saved["page_token"]
    assert made.outcome()[0] != clean.outcome()[0], "the signal must land mid-scan"

    resumed = made.run()

    assert resumed.returncode == 0, resumed.stderr
    assert "sync complete" in resumed.stderr
    assert made.checkpoint() is None
    assert_same(made, clean)


def test_a_killed_run_resumes_takes_its_lock_and_writes_nothing_twice(
    clean: Install, sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    made = install(sandbox_factory(ACCOUNT), tmp_path / "killed", rate="8")
    process = made.start()
    wait_for_page_token(made, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)

    resumed = made.run()
    assert resumed.returncode == 0, resumed.stderr
    time.sleep(3.5)  # the dead run's leases (CONNECTOR_LEASE_SECONDS=3) run out
    drained = made.cli("worker", "--once")
    assert drained.returncode == 0, drained.stderr

    assert_same(made, clean)


def test_a_second_run_and_a_dry_run_send_no_writes(clean: Install) -> None:
    clean.sandbox.reset_stats()

    again = clean.run()
    dry = clean.run("--dry-run")

    assert again.returncode == dry.returncode == 0
    assert "0 queued" in again.stderr
    writes = [e for e in clean.sandbox.stats()["log"] if e["method"] != "GET"]
    assert writes == []
