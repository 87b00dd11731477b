"""Row 7: the user disconnects the app in Keap, so the refresh token dies mid-stream."""

from __future__ import annotations

import time

import pytest

from connector.sandbox import RunningSandbox
from connector.store import Event, EventStatus
from connector.worker import REAUTH_PAUSE
from tests.fixtures_connector import Connector
from tests.reliability.conftest import (
    Figures,
    Sender,
    assert_note_once_per_event,
    note_markers,
    tally,
)

pytestmark = pytest.mark.slow

BEFORE = 10
AFTER = 40


def wait_until_paused(connector: Connector, timeout: float = 30) -> list[Event]:
    """Until the worker has turned events back for lack of credentials and holds none."""
    deadline = time.monotonic() + timeout
    while True:
        events = connector.events()
        refused = [e for e in events if e.last_error]
        busy = [e for e in events if e.status is EventStatus.PROCESSING]
        if refused and not busy:
            return events
        assert time.monotonic() < deadline, [(e.status, e.last_error) for e in events]
        time.sleep(0.2)


def test_revoked_refresh_token_keeps_events_queued_until_login(
    oauth: Connector, sandbox: RunningSandbox, figures: Figures
) -> None:
    """Nothing is lost or spent while the grant is dead, and the operator is told once.

    Events Keap refuses for lack of credentials go back to the queue with their attempt
    refunded (they are not the event's fault), the worker pauses instead of burning the token
    endpoint, one log line says to run ``connector auth login``, and after the login the same
    events are carried out, each once. The worker's pause (``REAUTH_PAUSE``, 30 s) bounds how
    long the resumption may take.
    """
    assert oauth.run("auth", "login", "--print-url").returncode == 0
    assert oauth.run("auth", "login", "--code", sandbox.mint_code()).returncode == 0
    served = oauth.serve()
    contacts = sandbox.state.contact_ids[: BEFORE + AFTER]
    sender = Sender(served.url)
    try:
        for cid in contacts[:BEFORE]:
            assert sender.post("unsubscribe_request", f"contactId={cid}").status_code == 202
        oauth.wait_until_settled(BEFORE)
        sandbox.revoke_grant()
        for cid in contacts[BEFORE:]:
            reply = sender.post("unsubscribe_request", f"contactId={cid}")
            assert reply.status_code == 202, "ingest does not depend on Keap's credentials"
    finally:
        sender.close()

    stuck = wait_until_paused(oauth)
    time.sleep(2)  # the pause holds: nothing is claimed, nothing is spent
    waiting = [e for e in oauth.events() if e.status is not EventStatus.DONE]
    refused = [e for e in waiting if e.last_error]
    assert len(waiting) == AFTER, [e.status for e in stuck]
    assert all(e.status is EventStatus.QUEUED for e in waiting), "kept queued, not dead"
    assert all(e.attempts == 0 for e in waiting), "the lost grant cost no attempt"
    assert all("connector auth login" in (e.last_error or "") for e in refused)
    failures_while_revoked = sandbox.stats()["refresh_failures"]

    assert oauth.run("auth", "login", "--print-url").returncode == 0
    relogin = oauth.run("auth", "login", "--code", sandbox.mint_code())
    assert relogin.returncode == 0, relogin.stderr
    logged_in = time.monotonic()
    events = oauth.wait_until_settled(BEFORE + AFTER, timeout=REAUTH_PAUSE.total_seconds() + 60)
    resumed_after = time.monotonic() - logged_in

    log = served.log.read_text()
    markers = note_markers(sandbox)
    counted = tally(events, markers)
    figures(
        sent=BEFORE + AFTER,
        **counted.figures(),
        queued_while_revoked=len(waiting),
        turned_back_with_error=len(refused),
        refresh_failures=sandbox.stats()["refresh_failures"],
        refreshes=sandbox.stats()["refreshes"],
        credential_errors_logged=log.count("Keap refused our credentials"),
        resumed_seconds_after_login=round(resumed_after, 1),
    )
    assert log.count("Keap refused our credentials") == 1, "one clear error, not one per event"
    assert "connector auth login" in log
    assert "Traceback" not in log
    assert failures_while_revoked <= 4, "the worker pauses rather than hammer the token endpoint"
    assert (counted.events, counted.done, counted.dead) == (BEFORE + AFTER, BEFORE + AFTER, 0)
    assert_note_once_per_event(events, markers)
