"""Planning, pure: properties that hold for any policy, contact and history."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.keap.models import Contact, EmailAddress
from connector.pipeline.outcome import SkipReason
from connector.pipeline.plan import PlanInput, plan_steps
from connector.pipeline.target import pick
from connector.policy import Policy, Strike
from tests.policy.builders import SOME_TYPES, TIMES, policies

STATUSES = st.sampled_from(["SINGLE_OPT_IN", "CONFIRMED", "HARD_BOUNCE", "BOUNCE", "MANUAL", None])


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    fields = draw(st.lists(st.sampled_from(["EMAIL1", "EMAIL2", "EMAIL3"]), unique=True))
    addresses = [
        EmailAddress(email=f"{f.lower()}@x.com", field=f, email_opt_status=draw(STATUSES))
        for f in fields
    ]
    return Contact(id="1", email_addresses=addresses, tag_ids=["9"])


@settings(max_examples=300)
@given(
    policy=policies(),
    contact=contacts(),
    posted=st.sampled_from([None, "email1@x.com", "email2@x.com", "nobody@x.com"]),
    bounce=st.sampled_from(SOME_TYPES),
    when=TIMES,
    history=st.lists(st.builds(Strike, st.sampled_from(SOME_TYPES), TIMES), max_size=6),
    protected=st.booleans(),
)
def test_a_protected_contact_never_gets_a_destructive_step(
    policy: Policy,
    contact: Contact,
    posted: str | None,
    bounce: object,
    when: object,
    history: list[Strike],
    protected: bool,
) -> None:
    target = pick(contact, posted)
    if target is None:
        return
    given_input = PlanInput(
        policy=policy,
        target=target,
        bounce_type=bounce,  # type: ignore[arg-type]  # drawn from SOME_TYPES
        occurred_at=when,  # type: ignore[arg-type]  # drawn from TIMES
        keap_count=None,
        strikes=history,
        protected=protected,
    )
    before = copy.deepcopy(given_input)
    plan = plan_steps(given_input)
    assert plan == plan_steps(given_input), "pure: the same input gives the same plan"
    assert given_input == before, "planning changes nothing it is given"
    for step in plan.steps:
        if not step.kind.destructive:
            continue
        if protected or not target.on_contact:
            assert step.skip is not None, step
            assert step.skip.code in (SkipReason.PROTECTED, SkipReason.NOT_ON_CONTACT)
