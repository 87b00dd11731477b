"""Row 3: the connection drops after Keap created the note, so the worker never hears back."""

from __future__ import annotations

import asyncio

import pytest

from connector.pipeline.outcome import StepKind, StepRecord, records
from connector.sandbox import RunningSandbox
from connector.store import AuditEntry, open_store
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

CALLBACKS = 60
NOTES = r"/contacts/[^/]+/notes$"


def audit_notes(connector: Connector) -> list[StepRecord]:
    async def read() -> list[AuditEntry]:
        store = await open_store(connector.database_url)
        try:
            return await store.list_audit(limit=100_000)
        finally:
            await store.close()

    return [r for r in records(asyncio.run(read())) if r.kind is StepKind.NOTE]


def test_a_note_whose_answer_is_lost_is_found_not_written_again(
    connector: Connector, sandbox: RunningSandbox, figures: Figures
) -> None:
    """Half the note creations are carried out by Keap and then lose their answer.

    The worker cannot know whether the note exists: the client must not resend the POST, and
    the re-run must find the note by its marker (the pending step) instead of writing a
    second one. ``drop_after_handling`` is what makes this the hard case: a drop before
    handling would leave no note, and resending would be right.
    """
    sandbox.set_faults(drop_rate=0.5, drop_after_handling=True, method="POST", path=NOTES)
    served = connector.serve()
    contacts = [new_contact(sandbox, f"lost{i}@example.com") for i in range(CALLBACKS)]
    sender = Sender(served.url)
    try:
        replies = [sender.post("unsubscribe_request", f"contactId={cid}") for cid in contacts]
    finally:
        sender.close()
    assert [r.status_code for r in replies] == [202] * CALLBACKS

    events = connector.wait_until_settled(CALLBACKS, timeout=180)

    stats = sandbox.stats()
    markers = note_markers(sandbox)
    counted = tally(events, markers)
    found = [r for r in audit_notes(connector) if (r.after or {}).get("found")]
    note_posts = sum(
        1 for r in stats["log"] if r["method"] == "POST" and r["operation"] == "createNote"
    )
    figures(
        sent=CALLBACKS,
        **counted.figures(),
        answers_lost=stats["faults"]["dropped"],
        found_after_loss=len(found),
        note_posts=note_posts,
    )
    assert stats["faults"]["dropped"] >= CALLBACKS // 5, "the fault really fired"
    assert (counted.events, counted.done, counted.dead) == (CALLBACKS, CALLBACKS, 0)
    assert_note_once_per_event(events, markers)
    assert len(found) == stats["faults"]["dropped"], "every lost answer was found, not resent"
    assert note_posts == CALLBACKS, "no note creation was sent twice"
