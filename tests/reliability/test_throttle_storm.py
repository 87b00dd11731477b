"""Row 2: Keap throttles to 2 requests/s while a 500-contact sync runs flat out."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connector.sandbox import SandboxOptions
from tests.e2e.test_sync_e2e import ANCHOR_MS, install
from tests.fixtures_sandbox import SandboxFactory
from tests.reliability.conftest import Figures

pytestmark = pytest.mark.slow

ACCOUNT = SandboxOptions(
    contacts=500,
    bounced_fraction=0.04,
    seed=29,
    requests_per_second=2.0,
    data_anchor_ms=ANCHOR_MS,
)
CLIENT_RATE = "20"  # ten times what Keap allows
# The client now paces from Keap's throttle headers (and starts at 4/s until it sees them), so
# a wrong rate alone no longer provokes a storm: the first requests are answered 429 on top, as
# many as one call's retries absorb (a longer unbroken run of 429s ends the sync with one
# error line and exit 1, as the first version of this change showed).
STORM = 4


def test_429_storm_during_a_500_contact_sync(
    sandbox_factory: SandboxFactory, tmp_path: Path, figures: Figures
) -> None:
    """The sync completes, every event is done, and the 429s it provokes stay bounded."""
    sandbox = sandbox_factory(ACCOUNT)
    made = install(sandbox, tmp_path / "storm", rate=CLIENT_RATE)
    sandbox.set_faults(error_count=STORM, error_status=429)

    done = made.run()

    stats = sandbox.stats()
    with sqlite3.connect(made.db, timeout=30) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM events GROUP BY status"))
        attempts = conn.execute("SELECT max(attempts) FROM events").fetchone()[0]
    answered = sum(n for code, n in stats["statuses"].items() if code != "429")
    throttled = int(stats["statuses"].get("429", 0))
    figures(
        contacts=ACCOUNT.contacts,
        events=sum(statuses.values()),
        done=statuses.get("done", 0),
        dead=statuses.get("dead", 0),
        throttled_429s=throttled,
        answered_calls=answered,
        most_event_attempts=attempts,
        summary=done.stderr.strip().splitlines()[-3:],
    )
    assert done.returncode == 0, done.stderr
    assert "sync complete" in done.stderr, done.stderr
    assert throttled >= STORM, "the storm really happened"
    assert set(statuses) == {"done"}, statuses
    assert throttled - STORM <= 0.02 * answered, "after the storm, paced under Keap's limit"
