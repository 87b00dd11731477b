"""Issue 13 item 11: names and addresses reach Keap notes and tasks as plain text.

Control characters (C0 but our own line breaks, C1), bidi overrides and zero-width characters
in a contact's name or address are dropped from every note and task the connector writes.
"""

from __future__ import annotations

import unicodedata

from connector.policy import parse_policy
from connector.sandbox.state import EmailItem
from connector.store import EventStatus
from tests.fixtures_pipeline import Harness

POLICY = parse_policy(
    "[[rule]]\n"
    'bounce = "hard_bounce"\n'
    'action = "opt_out"\n'
    "note = true\n"
    'task = "Call {given_name} {family_name} about {bounced_email}"\n',
    "test",
)
ADDRESS = "ada\u200b\u202e\x1b[31m@example.com"
HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _hidden(text: str) -> set[str]:
    return {c for c in text if c != "\n" and unicodedata.category(c) in HIDDEN}


async def test_item11_names_and_addresses_in_notes_and_tasks_are_plain_text(
    harness: Harness,
) -> None:
    state = harness.sandbox.state
    contact = state.add_contact(
        "Ada\x1b[31m\u202e", "Love\u200dlace\x85\x07", [EmailItem("EMAIL1", ADDRESS, "test")]
    )
    state.set_status(ADDRESS, "SINGLE_OPT_IN")
    event_id = await harness.event(contact.id, "hard_bounce", ADDRESS)
    await harness.worker(POLICY).drain()
    stored = await harness.store.get_event(event_id)
    assert stored is not None
    assert stored.status is EventStatus.DONE, stored.last_error
    [note] = state.notes_of(contact.id)
    [task] = state.tasks_of(contact.id)
    written = [note.title, note.text, str(task.fields.get("title")), task.fields["description"]]
    for text in written:
        assert not _hidden(text), (text, _hidden(text))
    assert "ada[31m@example.com" in note.text, "the address stays readable"
    assert task.fields["title"] == "Call Ada[31m Lovelace about ada[31m@example.com"
    assert harness.status(ADDRESS) == "MANUAL", "the opt-out used the address as Keap has it"
