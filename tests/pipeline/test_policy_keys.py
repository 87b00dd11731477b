"""DESIGN 7a against the sandbox: protect_tags, promote and domains, alone and together.

Each case asserts the sandbox's final state (addresses, statuses, tags), the audit record and
the rendered outcome, on both store backends.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from connector.pipeline.outcome import Outcome, SkipReason, StepKind, StepRecord, records
from connector.policy import Policy, parse_policy
from connector.undo import undo
from tests.fixtures_pipeline import Harness


def policy(action: str, *, protect: bool = False, extra: str = "") -> Policy:
    settings = '[settings]\nprotect_tags = ["VIP"]\n' if protect else ""
    rule = (
        f'[[rule]]\nbounce = "hard_bounce"\naction = "{action}"\nadd_tags = ["Bounced"]\n'
        f"note = true\n{extra}"
    )
    return parse_policy(settings + rule, "keys")


async def steps(harness: Harness, event_id: int) -> dict[StepKind, StepRecord]:
    return {r.kind: r for r in records(await harness.store.audit_for_event(event_id))}


def vip(harness: Harness, contact_id: int) -> None:
    tag = harness.sandbox.state.create_tag("VIP", "", None)
    harness.sandbox.state.apply_tag(str(tag.id), [str(contact_id)])


@dataclass(frozen=True)
class Case:
    name: str
    action: str
    protect: bool
    extra: str
    emails: tuple[str, ...]
    statuses: dict[str, str]  # address -> status before
    posted: str
    after_emails: dict[str, str]  # field -> address, in the sandbox after
    after_statuses: dict[str, str]
    outcomes: dict[StepKind, tuple[Outcome, SkipReason | None]]


CASES = [
    Case(
        "protected contact keeps its address, gets its tags",
        "opt_out",
        True,
        "",
        ("a@x.com",),
        {},
        "a@x.com",
        {"EMAIL1": "a@x.com"},
        {"a@x.com": "SINGLE_OPT_IN"},
        {StepKind.OPT_OUT: (Outcome.SKIPPED, SkipReason.PROTECTED)},
    ),
    Case(
        "promote moves the marketable EMAIL2 up and opts the bounced one out",
        "promote",
        False,
        "",
        ("bad@x.com", "good@y.com"),
        {},
        "bad@x.com",
        {"EMAIL1": "good@y.com", "EMAIL2": "bad@x.com"},
        {"bad@x.com": "MANUAL", "good@y.com": "SINGLE_OPT_IN"},
        {StepKind.PROMOTE: (Outcome.DONE, None), StepKind.OPT_OUT: (Outcome.DONE, None)},
    ),
    Case(
        "promote skips a non-marketable spare and takes EMAIL3",
        "promote",
        False,
        "",
        ("bad@x.com", "off@y.com", "good@z.com"),
        {"off@y.com": "HARD_BOUNCE"},
        "bad@x.com",
        {"EMAIL1": "good@z.com", "EMAIL2": "off@y.com", "EMAIL3": "bad@x.com"},
        {"bad@x.com": "MANUAL"},
        {StepKind.PROMOTE: (Outcome.DONE, None)},
    ),
    Case(
        "promote without a spare is an opt-out, and says so",
        "promote",
        False,
        "",
        ("bad@x.com",),
        {},
        "bad@x.com",
        {"EMAIL1": "bad@x.com"},
        {"bad@x.com": "MANUAL"},
        {
            StepKind.PROMOTE: (Outcome.SKIPPED, SkipReason.NO_SPARE),
            StepKind.OPT_OUT: (Outcome.DONE, None),
        },
    ),
    Case(
        "promote of a bounced EMAIL2 is an opt-out of EMAIL2",
        "promote",
        False,
        "",
        ("good@y.com", "bad@x.com"),
        {},
        "bad@x.com",
        {"EMAIL1": "good@y.com", "EMAIL2": "bad@x.com"},
        {"bad@x.com": "MANUAL", "good@y.com": "SINGLE_OPT_IN"},
        {
            StepKind.PROMOTE: (Outcome.SKIPPED, SkipReason.NOT_PRIMARY),
            StepKind.OPT_OUT: (Outcome.DONE, None),
        },
    ),
    Case(
        "protected and promote: nothing moves",
        "promote",
        True,
        "",
        ("bad@x.com", "good@y.com"),
        {},
        "bad@x.com",
        {"EMAIL1": "bad@x.com", "EMAIL2": "good@y.com"},
        {"bad@x.com": "SINGLE_OPT_IN"},
        {
            StepKind.PROMOTE: (Outcome.SKIPPED, SkipReason.PROTECTED),
            StepKind.OPT_OUT: (Outcome.SKIPPED, SkipReason.PROTECTED),
        },
    ),
    Case(
        "an excluded domain is left alone",
        "opt_out",
        False,
        'exclude_domains = ["x.com"]\n',
        ("a@x.com",),
        {},
        "a@x.com",
        {"EMAIL1": "a@x.com"},
        {"a@x.com": "SINGLE_OPT_IN"},
        {},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_policy_keys(harness: Harness, case: Case) -> None:
    cid = harness.contact(*case.emails)
    for email, status in case.statuses.items():
        harness.sandbox.state.set_status(email, status)
    if case.protect:
        vip(harness, cid)
    event_id = await harness.event(cid, "hard_bounce", case.posted)
    assert (
        await harness.worker(policy(case.action, protect=case.protect, extra=case.extra)).drain()
    ).done == 1
    assert dict(harness.sandbox.state.contacts[cid].emails) == case.after_emails
    for email, status in case.after_statuses.items():
        assert harness.status(email) == status
    found = await steps(harness, event_id)
    for kind, (outcome, reason) in case.outcomes.items():
        step = found[kind]
        assert step.outcome is outcome, step.describe()
        assert (step.reason.code if step.reason else None) is reason
    if not case.outcomes:
        assert not any(k.destructive for k in found)
        assert harness.tags_of(cid) == set(), "no rule applied"
    else:
        assert "Bounced" in harness.tags_of(cid), "tags run whatever the destructive steps do"
        (note,) = harness.notes_of(cid)
        for kind, (_, reason) in case.outcomes.items():
            if reason is not None:
                assert str(found[kind].reason) in note


async def test_protection_costs_one_tag_lookup_per_process(harness: Harness) -> None:
    first, second = harness.contact("a@x.com"), harness.contact("b@x.com")
    vip(harness, first)
    worker = harness.worker(policy("opt_out", protect=True))
    await harness.event(first, "hard_bounce", "a@x.com")
    await harness.event(second, "hard_bounce", "b@x.com")
    harness.sandbox.reset_stats()
    assert (await worker.drain()).done == 2
    calls = harness.sandbox.stats()["calls"]
    lookups = sum(n for op, n in calls.items() if "listTags" in op or op.startswith("GET /tags"))
    assert lookups <= 2, calls  # the VIP lookup once, the "Bounced" tag once
    assert harness.status("a@x.com") == "SINGLE_OPT_IN"
    assert harness.status("b@x.com") == "MANUAL"


async def test_undo_puts_promoted_addresses_back(harness: Harness) -> None:
    cid = harness.contact("bad@x.com", "good@y.com")
    event_id = await harness.event(cid, "hard_bounce", "bad@x.com")
    await harness.worker(policy("promote")).drain()
    promote = (await steps(harness, event_id))[StepKind.PROMOTE]
    assert promote.audit_id is not None
    message = await undo(harness.store, harness.client, promote.audit_id)
    assert message.startswith("restored")
    assert dict(harness.sandbox.state.contacts[cid].emails) == {
        "EMAIL1": "bad@x.com",
        "EMAIL2": "good@y.com",
    }
    after = await steps(harness, event_id)
    assert after[StepKind.UNDO].outcome is Outcome.DONE
    assert after[StepKind.PROMOTE].undone
