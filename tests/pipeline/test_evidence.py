"""DESIGN 1a against the sandbox: a destructive step only on an address there is evidence for.

Each case asserts what reached the simulated Keap (statuses, addresses, tags, notes), not only
what was planned, and that the recorded outcome says why.
"""

from __future__ import annotations

import pytest

from connector.pipeline.outcome import Outcome, SkipReason, StepKind, StepRecord, records
from connector.policy import parse_policy
from tests.fixtures_pipeline import Harness

OPT_OUT = parse_policy(
    '[[rule]]\nbounce = "hard_bounce"\naction = "opt_out"\nadd_tags = ["Bounced"]\nnote = true\n',
    "opt-out",
)
BLANK = parse_policy('[[rule]]\nbounce = "hard_bounce"\naction = "blank_email"\n', "blank")


async def steps(harness: Harness, event_id: int) -> dict[StepKind, StepRecord]:
    return {r.kind: r for r in records(await harness.store.audit_for_event(event_id))}


async def test_a_posted_address_on_the_contact_is_the_one_acted_on(harness: Harness) -> None:
    cid = harness.contact("one@example.com", "two@example.com")
    event_id = await harness.event(cid, "hard_bounce", "TWO@example.com")
    await harness.worker(OPT_OUT).drain()
    assert harness.status("two@example.com") == "MANUAL"
    assert harness.status("one@example.com") == "SINGLE_OPT_IN"
    found = await steps(harness, event_id)
    assert found[StepKind.OPT_OUT].outcome is Outcome.DONE
    target = found[StepKind.TARGET]
    assert target.after is not None
    assert target.after["evidence"] == "posted address"


async def test_another_contacts_address_touches_nothing_but_tags_and_notes(
    harness: Harness,
) -> None:
    a = harness.contact("a@example.com")
    b = harness.contact("b@example.com")
    event_id = await harness.event(a, "hard_bounce", "b@example.com")
    await harness.worker(OPT_OUT).drain()
    assert harness.status("a@example.com") == "SINGLE_OPT_IN"
    assert harness.status("b@example.com") == "SINGLE_OPT_IN"
    assert dict(harness.sandbox.state.contacts[a].emails) == {"EMAIL1": "a@example.com"}
    assert harness.tags_of(a) == {"Bounced"}
    assert harness.tags_of(b) == set()
    (note,) = harness.notes_of(a)
    assert "Did not opt out the address b@example.com (rule 1): posted address not on the" in note
    opt_out = (await steps(harness, event_id))[StepKind.OPT_OUT]
    assert opt_out.outcome is Outcome.SKIPPED
    assert opt_out.reason is not None
    assert opt_out.reason.code is SkipReason.NOT_ON_CONTACT
    event = await harness.store.get_event(event_id)
    assert event is not None
    assert event.outcome is not None
    assert "skipped (posted address not on the contact)" in event.outcome


async def test_an_address_on_no_contact_is_no_evidence(harness: Harness) -> None:
    cid = harness.contact("real@example.com")
    with_id = await harness.event(cid, "hard_bounce", "nobody@nowhere.example")
    without_id = await harness.event(None, "hard_bounce", "nobody@nowhere.example")
    await harness.worker(OPT_OUT).drain()
    assert harness.status("real@example.com") == "SINGLE_OPT_IN"
    opt_out = (await steps(harness, with_id))[StepKind.OPT_OUT]
    assert opt_out.outcome is Outcome.SKIPPED
    orphan = await harness.store.get_event(without_id)
    assert orphan is not None
    assert orphan.outcome is not None
    assert orphan.outcome.startswith("skipped: no Keap contact has")
    assert await harness.store.audit_for_event(without_id) == []


async def test_none_posted_takes_the_one_bounced_address(harness: Harness) -> None:
    cid = harness.contact("keep@example.com", "dead@example.com")
    harness.sandbox.state.set_status("dead@example.com", "HARD_BOUNCE")
    event_id = await harness.event(cid, "hard_bounce")
    await harness.worker(BLANK).drain()
    assert dict(harness.sandbox.state.contacts[cid].emails) == {"EMAIL1": "keep@example.com"}
    target = (await steps(harness, event_id))[StepKind.TARGET]
    assert target.after is not None
    assert target.after["field"] == "EMAIL2"
    evidence = target.after["evidence"]
    assert evidence is not None
    assert evidence.startswith("picked: EMAIL2 (no address posted")


async def test_none_posted_and_none_bounced_takes_email1_and_says_so(harness: Harness) -> None:
    cid = harness.contact("first@example.com", "second@example.com")
    event_id = await harness.event(cid, "hard_bounce")
    await harness.worker(OPT_OUT).drain()
    assert harness.status("first@example.com") == "MANUAL"
    assert harness.status("second@example.com") == "SINGLE_OPT_IN"
    target = (await steps(harness, event_id))[StepKind.TARGET]
    assert target.describe() == (
        "address EMAIL1 f***@example.com (picked: EMAIL1 (no address posted))"
    )


@pytest.mark.parametrize(
    ("posted", "acted"), [("straße@d.example", False), ("strasse@d.example", True)]
)
async def test_sharp_s_is_not_ss(harness: Harness, posted: str, acted: bool) -> None:
    cid = harness.contact("STRASSE@d.example")
    event_id = await harness.event(cid, "hard_bounce", posted)
    await harness.worker(OPT_OUT).drain()
    assert harness.status("STRASSE@d.example") == ("MANUAL" if acted else "SINGLE_OPT_IN")
    opt_out = (await steps(harness, event_id))[StepKind.OPT_OUT]
    assert opt_out.outcome is (Outcome.DONE if acted else Outcome.SKIPPED)
