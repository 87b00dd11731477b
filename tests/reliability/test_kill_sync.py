"""Row 5: ``connector sync`` is SIGKILLed mid-page, then run again."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from connector.sandbox import SandboxOptions
from tests.e2e.test_sync_e2e import ANCHOR_MS, Install, assert_same, install
from tests.fixtures_sandbox import SandboxFactory
from tests.reliability.conftest import Figures

pytestmark = pytest.mark.slow

ACCOUNT = SandboxOptions(
    contacts=3000,
    bounced_fraction=0.03,
    seed=41,
    requests_per_second=1000.0,
    data_anchor_ms=ANCHOR_MS,
)
LEASE_SECONDS = 3.0


def event_counts(made: Install) -> dict[str, int]:
    with sqlite3.connect(made.db, timeout=30) as conn:
        rows = conn.execute("SELECT status, count(*) FROM events GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def test_sync_killed_mid_page_then_rerun_equals_one_clean_run(
    sandbox_factory: SandboxFactory, tmp_path: Path, figures: Figures
) -> None:
    """The killed run plus a rerun leave Keap exactly as one clean run on a twin sandbox.

    The kill lands while a page's findings are being remediated (some done, some still
    queued or in flight), at a random point (the seed is in the figures; ``RELIABILITY_SEED``
    replays it). The rerun starts after the dead run's leases (3 s) have run out, as an
    operator's would, and must take over its lock, its checkpoint and its leased events.
    """
    seed = int(os.environ.get("RELIABILITY_SEED") or time.time_ns() % 2**32)
    kill_after_done = random.Random(seed).randint(1, 15)
    clean = install(sandbox_factory(ACCOUNT), tmp_path / "clean")
    reference = clean.run()
    assert reference.returncode == 0, reference.stderr

    made = install(sandbox_factory(ACCOUNT), tmp_path / "killed", rate="8")
    process = made.start()
    deadline = time.monotonic() + 120
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        counts = event_counts(made) if made.db.exists() else {}
        if counts.get("done", 0) >= kill_after_done:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    at_kill = event_counts(made)
    assert sum(at_kill.values()) > at_kill.get("done", 0), "the kill landed mid-page"
    assert made.checkpoint() is not None

    time.sleep(LEASE_SECONDS + 0.5)
    made.env["KEAP_REQUESTS_PER_SECOND"] = "100"
    rerun = made.run()
    after = event_counts(made)

    notes, _, _ = made.outcome()
    clean_notes, _, _ = clean.outcome()
    figures(
        seed=seed,
        events_at_kill=at_kill,
        events_after_rerun=after,
        notes=sum(notes.values()),
        clean_run_notes=sum(clean_notes.values()),
        writes_killed_plus_rerun=writes(made),
        writes_clean=writes(clean),
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "sync complete" in rerun.stderr
    assert " 0 dead, 0 left queued" in rerun.stderr, rerun.stderr
    assert made.checkpoint() is None
    assert set(after) == {"done"}, after
    assert_same(made, clean)


def writes(made: Install) -> int:
    return sum(1 for entry in made.sandbox.stats()["log"] if entry["method"] != "GET")
