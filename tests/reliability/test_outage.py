"""Row 1: Keap answers 503 to everything for 30 s while a burst of 200 callbacks arrives."""

from __future__ import annotations

import time

import pytest

from connector.sandbox import RunningSandbox
from tests.fixtures_connector import Connector
from tests.reliability.conftest import (
    Figures,
    Sender,
    assert_note_once_per_event,
    new_contact,
    note_markers,
    tally,
)

pytestmark = pytest.mark.slow

CALLBACKS = 200
OUTAGE_SECONDS = 30.0


def test_outage_of_30s_during_a_burst_of_200_callbacks(
    connector: Connector, sandbox: RunningSandbox, figures: Figures
) -> None:
    """Every callback is stored (the outage is Keap's, not ours) and each is remediated once.

    The events fail while Keap is down and are retried with backoff; none may run out of
    attempts (dead) and none may be carried out twice (one note per event, by its marker). The
    worker runs 32 events at a time so that many of them really meet the outage, rather than
    most waiting in the queue behind a few that spend it retrying.
    """
    connector.env["CONNECTOR_WORKER_CONCURRENCY"] = "32"
    served = connector.serve()
    contacts = [new_contact(sandbox, f"outage{i}@example.com") for i in range(CALLBACKS)]
    sandbox.set_faults(outage_seconds=OUTAGE_SECONDS)
    started = time.monotonic()
    sender = Sender(served.url)
    try:
        replies = [sender.post("unsubscribe_request", f"contactId={cid}") for cid in contacts]
    finally:
        sender.close()
    assert [r.status_code for r in replies] == [202] * CALLBACKS
    assert {r.json()["status"] for r in replies} == {"queued"}

    events = connector.wait_until_settled(CALLBACKS, timeout=OUTAGE_SECONDS + 180)
    settled = time.monotonic() - started

    stats = sandbox.stats()
    markers = note_markers(sandbox)
    counted = tally(events, markers)
    retried = sum(1 for e in events if e.attempts > 1)
    most_attempts = max(e.attempts for e in events)
    figures(
        sent=CALLBACKS,
        **counted.figures(),
        outage_503s=stats["faults"]["outage"],
        events_retried=retried,
        most_attempts=most_attempts,
        settled_seconds=round(settled, 1),
    )
    assert stats["faults"]["outage"] > 0, "the outage was really hit"
    assert retried >= 32, "many events met the outage and had to wait for Keap to come back"
    assert settled >= OUTAGE_SECONDS, "nothing can finish while Keap is down"
    assert (counted.events, counted.done, counted.dead) == (CALLBACKS, CALLBACKS, 0)
    assert_note_once_per_event(events, markers)
    opted_out = [sandbox.state.address(f"outage{i}@example.com") for i in range(CALLBACKS)]
    assert all(a is not None and a.status == "MANUAL" for a in opted_out)
