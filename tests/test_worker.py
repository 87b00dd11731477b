"""The worker against the sandbox: plans carried out once, failures kept, nothing lost."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from connector.policy import parse_policy
from connector.store import EventStatus, StepStatus
from connector.undo import undo
from tests.fixtures_pipeline import Harness, after_backoff


async def test_three_hard_bounces_walk_the_strikes_and_opt_out_once(harness: Harness) -> None:
    cid = harness.contact("ada@example.com")
    worker = harness.worker()
    expected = [
        ({"First Hard Bounce"}, "SINGLE_OPT_IN"),
        ({"Second Hard Bounce"}, "SINGLE_OPT_IN"),
        ({"Third Strike"}, "MANUAL"),
    ]
    for tags, status in expected:
        event_id = await harness.event(cid, "hard_bounce", "ada@example.com")
        result = await worker.drain()
        assert result.done == 1
        assert harness.tags_of(cid) == tags
        assert harness.status("ada@example.com") == status
        stored = await harness.store.get_event(event_id)
        assert stored is not None
        assert stored.status is EventStatus.DONE
    notes = harness.notes_of(cid)
    assert len(notes) == 3
    assert "ada@example.com" in notes[-1], "the note keeps the address"
    assert len(harness.sandbox.state.tasks_of(cid)) == 1
    opt_outs = [a for a in await harness.store.list_audit(str(cid)) if a.kind == "opt_out"]
    assert len(opt_outs) == 1
    assert harness.sandbox.stats()["spec_violations"] == 0


async def test_mail_block_tags_for_review_and_never_opts_out(harness: Harness) -> None:
    cid = harness.contact("blocked@example.com")
    await harness.event(cid, "mail_block_spam_detected")
    await harness.worker().drain()
    assert harness.status("blocked@example.com") == "SINGLE_OPT_IN"
    assert harness.tags_of(cid)


async def test_unsubscribe_request_opts_out_at_once(harness: Harness) -> None:
    cid = harness.contact("bye@example.com")
    await harness.event(cid, "unsubscribe_request", "bye@example.com")
    await harness.worker().drain()
    assert harness.status("bye@example.com") == "MANUAL"


async def test_only_the_bounced_address_is_opted_out(harness: Harness) -> None:
    cid = harness.contact("one@example.com", "two@example.com")
    await harness.event(cid, "unsubscribe_request", "TWO@example.com")
    await harness.worker().drain()
    assert harness.status("two@example.com") == "MANUAL"
    assert harness.status("one@example.com") == "SINGLE_OPT_IN"


BLANKING = parse_policy(
    '[[rule]]\nbounce = "hard_bounce"\naction = "blank_email"\nnote = true\n', "test"
)


async def test_blank_removes_only_that_address_and_undo_restores_it(harness: Harness) -> None:
    cid = harness.contact("keep@example.com", "gone@example.com", "also@example.com")
    event_id = await harness.event(cid, "hard_bounce", "gone@example.com")
    await harness.worker(BLANKING).drain()
    emails = dict(harness.sandbox.state.contacts[cid].emails)
    assert emails == {"EMAIL1": "keep@example.com", "EMAIL3": "also@example.com"}
    assert "gone@example.com" in harness.notes_of(cid)[0]
    (blank,) = [a for a in await harness.store.audit_for_event(event_id) if a.kind == "blank_email"]
    before = json.loads(blank.before_value or "{}")
    assert (before["email"], before["field"]) == ("gone@example.com", "EMAIL2")
    message = await undo(harness.store, harness.client, blank.id)
    assert "restored" in message
    assert dict(harness.sandbox.state.contacts[cid].emails)["EMAIL2"] == "gone@example.com"


async def test_a_retry_after_blanking_never_blanks_another_address(harness: Harness) -> None:
    """The retry re-reads a contact that no longer holds the bounced address: it must carry on
    with that address, not pick the next one (here the only one left) and blank it too."""
    cid = harness.contact("gone@example.com", "keep@example.com")
    harness.sandbox.state.set_status("gone@example.com", "HARD_BOUNCE")
    event_id = await harness.event(cid, "hard_bounce")
    harness.sandbox.set_faults(drop_count=1, method="POST", path="/notes$")
    assert (await harness.worker(BLANKING).drain()).failed == 1
    assert dict(harness.sandbox.state.contacts[cid].emails) == {"EMAIL2": "keep@example.com"}

    await after_backoff()
    assert (await harness.worker(BLANKING).drain()).done == 1

    assert dict(harness.sandbox.state.contacts[cid].emails) == {"EMAIL2": "keep@example.com"}
    blanks = [a for a in await harness.store.audit_for_event(event_id) if a.kind == "blank_email"]
    assert [json.loads(b.before_value or "{}")["email"] for b in blanks] == ["gone@example.com"]
    assert len(harness.notes_of(cid)) == 1
    assert len(await harness.store.strikes_for(str(cid), "gone@example.com")) == 1
    assert await harness.store.strikes_for(str(cid), "keep@example.com") == []


async def test_a_finished_blank_queued_again_blanks_nothing_more(harness: Harness) -> None:
    cid = harness.contact("gone@example.com", "keep@example.com")
    harness.sandbox.state.set_status("gone@example.com", "HARD_BOUNCE")
    event_id = await harness.event(cid, "hard_bounce")
    assert (await harness.worker(BLANKING).drain()).done == 1

    assert await harness.store.requeue(event_id) == 1
    assert (await harness.worker(BLANKING).drain()).done == 1

    assert dict(harness.sandbox.state.contacts[cid].emails) == {"EMAIL2": "keep@example.com"}
    assert len(harness.notes_of(cid)) == 1


async def test_a_blank_whose_answer_was_lost_is_not_repeated_elsewhere(harness: Harness) -> None:
    cid = harness.contact("gone@example.com", "keep@example.com")
    harness.sandbox.state.set_status("gone@example.com", "HARD_BOUNCE")
    event_id = await harness.event(cid, "hard_bounce")
    harness.quick_retries()
    harness.sandbox.set_faults(drop_count=2, method="PATCH", path="/contacts/")
    assert (await harness.worker(BLANKING).drain()).failed == 1
    harness.sandbox.clear_faults()

    await after_backoff()
    assert (await harness.worker(BLANKING).drain()).done == 1

    assert dict(harness.sandbox.state.contacts[cid].emails) == {"EMAIL2": "keep@example.com"}
    steps = {a.step: a.status for a in await harness.store.audit_for_event(event_id)}
    assert steps["blank:EMAIL1"] is StepStatus.DONE
    assert "blank:EMAIL2" not in steps


async def test_dry_run_plans_and_writes_nothing(harness: Harness) -> None:
    cid = harness.contact("dry@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.reset_stats()
    await harness.worker(dry_run=True).drain()
    assert harness.status("dry@example.com") == "SINGLE_OPT_IN"
    assert harness.notes_of(cid) == []
    steps = await harness.store.audit_for_event(event_id)
    assert steps
    actions = [s for s in steps if s.kind != "target"]
    assert actions
    assert all(s.status is StepStatus.PLANNED and s.dry_run for s in actions)
    writes = [r for r in harness.sandbox.stats()["log"] if r["method"] != "GET"]
    assert writes == [], f"dry run wrote to Keap: {writes}"


async def test_deleted_contact_ends_the_event_with_a_reason(harness: Harness) -> None:
    event_id = await harness.event(999_999, "hard_bounce")
    await harness.worker().drain()
    event = await harness.store.get_event(event_id)
    assert event is not None
    assert event.status is EventStatus.DONE
    assert "no longer exists" in (event.outcome or "")


async def test_outage_keeps_the_event_and_it_completes_after(harness: Harness) -> None:
    cid = harness.contact("outage@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(outage_seconds=3600)
    harness.quick_retries()
    worker = harness.worker()
    result = await worker.drain()
    assert result.failed == 1
    event = await harness.store.get_event(event_id)
    assert event is not None
    assert event.status is EventStatus.FAILED
    assert "503" in (event.last_error or "")
    harness.sandbox.clear_faults()
    await after_backoff()
    result = await worker.drain()
    assert result.done == 1
    assert harness.status("outage@example.com") == "MANUAL"
    assert len(harness.notes_of(cid)) == 1


async def test_lost_note_answer_is_checked_before_resending(harness: Harness) -> None:
    cid = harness.contact("lost@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(drop_count=1, method="POST", path="/notes$")
    result = await harness.worker().drain()
    assert result.failed == 1, "the unknown outcome fails the attempt instead of resending"
    steps = {s.step: s.status for s in await harness.store.audit_for_event(event_id)}
    assert steps["note"] is StepStatus.PENDING
    await after_backoff()
    result = await harness.worker().drain()
    assert result.done == 1
    assert len(harness.notes_of(cid)) == 1, "exactly one note"


async def test_too_many_failures_make_the_event_dead_not_lost(harness: Harness) -> None:
    cid = harness.contact("dead@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(outage_seconds=3600)
    harness.quick_retries()
    worker = harness.worker(max_attempts=2)
    assert (await worker.drain()).failed == 1
    await after_backoff()
    assert (await worker.drain()).dead == 1
    event = await harness.store.get_event(event_id)
    assert event is not None
    assert event.status is EventStatus.DEAD
    assert await harness.store.requeue(failed=True) == 1


async def test_a_slow_event_keeps_its_lease_while_it_is_worked_on(harness: Harness) -> None:
    cid = harness.contact("slow@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(latency_ms=400)
    work = asyncio.create_task(harness.worker(lease=timedelta(seconds=0.6)).drain())

    await asyncio.sleep(1.5)
    stolen = await harness.store.claim_events(10, timedelta(seconds=60), "another-worker")
    result = await work

    assert stolen == [], "the lease ran out while the first worker was still at work"
    assert result.done == 1
    event = await harness.store.get_event(event_id)
    assert event is not None
    assert event.attempts == 1
    assert len(harness.notes_of(cid)) == 1


async def test_an_event_taken_over_is_left_to_its_new_worker(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = harness.contact("taken@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(latency_ms=300)

    async def taken(*_: object) -> set[int]:
        return set()

    monkeypatch.setattr(harness.store, "renew_leases", taken)
    result = await harness.worker(lease=timedelta(seconds=0.3)).drain()

    assert result.lost == 1
    assert result.done == 0
    event = await harness.store.get_event(event_id)
    assert event is not None
    assert event.status is EventStatus.PROCESSING, "the status is the new worker's to write"


async def test_renewing_keeps_only_the_owners_leases(harness: Harness) -> None:
    first = await harness.event(harness.contact("a@example.com"), "hard_bounce")
    second = await harness.event(harness.contact("b@example.com"), "hard_bounce")
    store = harness.store
    assert {e.id for e in await store.claim_events(1, timedelta(seconds=60), "me")} == {first}
    assert {e.id for e in await store.claim_events(1, timedelta(seconds=60), "you")} == {second}

    assert await store.renew_leases([first, second], "me", timedelta(seconds=60)) == {first}
    assert await store.renew_leases([], "me", timedelta(seconds=60)) == set()
    await store.complete_event(first, "done")
    assert await store.renew_leases([first], "me", timedelta(seconds=60)) == set()
