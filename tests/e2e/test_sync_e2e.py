"""``connector sync`` as a real process against the sandbox: interrupted by a signal, resumed.

The sync runs in its own process with a slow client-side rate so a signal reliably lands while
the scan is still going; the sandbox runs in the test. The reference is one clean run against an
identical sandbox (same seed and anchor): the interrupted run plus its resumption must leave
Keap exactly as that run did, with no note written twice.

Each test runs on SQLite and on PostgreSQL. The reference run is made once per module, on SQLite,
so the PostgreSQL runs are also held to exactly what a SQLite install does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.sandbox import RunningSandbox, SandboxOptions, start_sandbox
from connector.store import open_store
from connector.sync import SYNC_NAME
from tests.fixtures_sandbox import SandboxFactory
from tests.fixtures_store import DatabaseUrls

pytestmark = pytest.mark.slow

ANCHOR_MS = 1_767_225_600_000
ACCOUNT = SandboxOptions(
    contacts=5000,
    bounced_fraction=0.04,
    seed=23,
    requests_per_second=1000.0,
    data_anchor_ms=ANCHOR_MS,
)
Outcome = tuple[Counter[int], dict[int, set[str]], dict[str, str]]


def sync_command(*args: str) -> list[str]:
    """``connector sync`` exactly as a user runs it."""
    return [sys.executable, "-m", "connector", "sync", *args]


@dataclass
class Install:
    workdir: Path
    env: dict[str, str]
    sandbox: RunningSandbox

    @property
    def database_url(self) -> str:
        return self.env["CONNECTOR_DATABASE_URL"]

    @property
    def db(self) -> Path:
        """The SQLite file of an install made without a ``database_url``."""
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
        """The sync's stored checkpoint, read through the store as the connector reads it."""

        async def load() -> str | None:
            store = await open_store(self.database_url)
            try:
                return await store.load_checkpoint(SYNC_NAME)
            finally:
                await store.close()

        data = asyncio.run(load())
        return json.loads(data) if data else None

    def outcome(self) -> Outcome:
        state = self.sandbox.state
        notes = Counter(n.contact_id for n in state.notes.values())
        tags: dict[int, set[str]] = {}
        for tag in state.tags.values():
            for cid in tag.contacts:
                tags.setdefault(cid, set()).add(tag.name)
        return notes, tags, {k: a.status for k, a in state.addresses.items()}


def install(
    sandbox: RunningSandbox, workdir: Path, rate: str = "100", database_url: str | None = None
) -> Install:
    """A migrated install in ``workdir``, on ``database_url`` or else ``connector.db`` there."""
    workdir.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))},
        **sandbox.env(),
        "CONNECTOR_DATABASE_URL": database_url or f"sqlite:///{workdir / 'connector.db'}",
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
        saved = made.checkpoint()
        if saved and saved.get("page_token"):
            return
        time.sleep(0.05)
    raise AssertionError("the sync never stored a page checkpoint")


def assert_same(made: Install, clean: Install | Outcome) -> None:
    got = made.outcome()
    want = clean.outcome() if isinstance(clean, Install) else clean
    compared: dict[str, tuple[Mapping[Any, object], Mapping[Any, object]]] = {
        "notes": (got[0], want[0]),
        "tags": (got[1], want[1]),
        "statuses": (got[2], want[2]),
    }
    for name, (mine, theirs) in compared.items():
        keys = set(mine) | set(theirs)
        differ = {k: (mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)}
        assert not differ, f"{name} differ from one clean run (got, want): {differ}"


def run_clean(made: Install) -> Install:
    """One uninterrupted run of ``made``, which must finish with nothing left over."""
    done = made.run()
    assert done.returncode == 0, done.stderr
    assert "sync complete" in done.stderr
    assert "0 to retry, 0 dead, 0 left queued" in done.stderr, done.stderr
    return made


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """The reference outcome: Keap after one clean run on SQLite, made once for the module."""
    sandbox = start_sandbox(ACCOUNT)
    try:
        made = install(sandbox, tmp_path_factory.mktemp("reference") / "clean")
        yield run_clean(made).outcome()
    finally:
        sandbox.stop()


@pytest.fixture
def clean(sandbox_factory: SandboxFactory, tmp_path: Path, database_urls: DatabaseUrls) -> Install:
    """One uninterrupted run on the test's backend."""
    return run_clean(
        install(sandbox_factory(ACCOUNT), tmp_path / "clean", database_url=database_urls("clean"))
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_page_and_the_resumed_run_finishes_it(
    sig: signal.Signals,
    reference: Outcome,
    sandbox_factory: SandboxFactory,
    tmp_path: Path,
    database_urls: DatabaseUrls,
) -> None:
    url = database_urls("cut")
    made = install(sandbox_factory(ACCOUNT), tmp_path / "cut", rate="8", database_url=url)
    process = made.start()
    wait_for_page_token(made, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "stopped early" in stderr
    saved = made.checkpoint()
    assert saved is not None
    assert saved["page_token"]
    assert made.outcome()[0] != reference[0], "the signal must land mid-scan"

    resumed = made.run()

    assert resumed.returncode == 0, resumed.stderr
    assert "sync complete" in resumed.stderr
    assert made.checkpoint() is None
    assert_same(made, reference)


def test_a_killed_run_resumes_takes_its_lock_and_writes_nothing_twice(
    reference: Outcome,
    sandbox_factory: SandboxFactory,
    tmp_path: Path,
    database_urls: DatabaseUrls,
) -> None:
    url = database_urls("killed")
    made = install(sandbox_factory(ACCOUNT), tmp_path / "killed", rate="8", database_url=url)
    process = made.start()
    wait_for_page_token(made, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)

    resumed = made.run()
    assert resumed.returncode == 0, resumed.stderr
    time.sleep(3.5)  # the dead run's leases (CONNECTOR_LEASE_SECONDS=3) run out
    drained = made.cli("worker", "--once")
    assert drained.returncode == 0, drained.stderr

    assert_same(made, reference)


def test_a_second_run_and_a_dry_run_send_no_writes(clean: Install, reference: Outcome) -> None:
    assert_same(clean, reference)
    clean.sandbox.reset_stats()

    again = clean.run()
    dry = clean.run("--dry-run")

    assert again.returncode == dry.returncode == 0
    assert "0 queued" in again.stderr
    writes = [e for e in clean.sandbox.stats()["log"] if e["method"] != "GET"]
    assert writes == []
