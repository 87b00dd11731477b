"""Row 6: access tokens die every 2 s while 4 ``connector worker`` processes share one store."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

import pytest

from connector.sandbox import RunningSandbox
from tests.fixtures_connector import Connector
from tests.reliability.conftest import (
    Figures,
    Process,
    Sender,
    assert_note_once_per_event,
    note_markers,
    tally,
)

pytestmark = pytest.mark.slow

WORKERS = 4
CALLBACKS = 150
PACE_SECONDS = 0.08  # about 12 s of callbacks: six token lifetimes
TOKEN_TTL = 2.0
TOKEN_LATENCY_MS = 150  # a slow token endpoint widens any window two refreshes could share


@pytest.mark.parametrize(
    "sandbox", [{"token_ttl": TOKEN_TTL, "contacts": CALLBACKS + 10}], indirect=True
)
def test_tokens_expiring_every_2s_with_4_worker_processes(
    oauth: Connector,
    sandbox: RunningSandbox,
    spawn: Callable[..., Process],
    figures: Figures,
) -> None:
    """No refresh is ever refused, because refreshes never overlap, even across processes.

    Keap rotates the refresh token on every refresh: two processes refreshing with the same
    one would leave the loser with ``invalid_grant`` (the sandbox counts those as
    ``refresh_failures``). The store's ``refresh_lock`` (an ``flock`` beside the SQLite file)
    must serialise them: the sandbox's token log shows refreshes at least the endpoint's
    latency apart, and the processes share each new token instead of each refreshing its own.
    """
    assert oauth.run("auth", "login", "--print-url").returncode == 0
    login = oauth.run("auth", "login", "--code", sandbox.mint_code())
    assert login.returncode == 0, login.stderr
    sandbox.reset_stats()
    sandbox.set_faults(latency_ms=TOKEN_LATENCY_MS, path="^/token$")
    served = oauth.serve("--no-worker")
    workers = [spawn("worker") for _ in range(WORKERS)]
    started = time.monotonic()
    sender = Sender(served.url)
    try:
        for cid in sandbox.state.contact_ids[:CALLBACKS]:
            assert sender.post("unsubscribe_request", f"contactId={cid}").status_code == 202
            time.sleep(PACE_SECONDS)
    finally:
        sender.close()
    events = oauth.wait_until_settled(CALLBACKS, timeout=120)
    elapsed = time.monotonic() - started
    logs = "".join(w.output() for w in workers)
    assert all(w.process.poll() is None for w in workers), logs[-3000:]

    stats = sandbox.stats()
    refreshed_at = sorted(
        e["time"] for e in stats["log"] if e["operation"] == "token" and e["status"] == 200
    )
    gaps = [b - a for a, b in pairwise(refreshed_at)]
    markers = note_markers(sandbox)
    counted = tally(events, markers)
    figures(
        sent=CALLBACKS,
        **counted.figures(),
        workers=WORKERS,
        events_per_worker=[w.output().count(" done: ") for w in workers],
        seconds=round(elapsed, 1),
        refreshes=stats["refreshes"],
        refresh_failures=stats["refresh_failures"],
        unauthorized_401s=stats["unauthorized"],
        closest_refreshes_s=round(min(gaps), 3) if gaps else None,
    )
    assert stats["refresh_failures"] == 0, "a refresh raced another: invalid_grant"
    assert "invalid_grant" not in logs
    assert stats["refreshes"] >= elapsed / TOKEN_TTL / 2, "tokens really expired many times"
    assert stats["refreshes"] <= elapsed / (TOKEN_TTL / 2) + WORKERS, "each new token is shared"
    assert min(gaps) >= TOKEN_LATENCY_MS / 1000 * 0.9, "two refreshes were in flight at once"
    assert all(" done: " in w.output() for w in workers), "every process took part"
    assert (counted.events, counted.done, counted.dead) == (CALLBACKS, CALLBACKS, 0)
    assert_note_once_per_event(events, markers)
