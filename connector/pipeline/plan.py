"""Event + contact + history -> the steps to take, each with any skip already decided. Pure.

The worker and ``sync --dry-run`` both plan through :func:`plan_steps`, so a dry run shows
exactly what a run would do. The policy engine decides *what* the rules ask for; this module
decides which of those steps this event may take: a destructive step needs evidence for the
address (DESIGN 1a) and is pointless on an address Keap already keeps from mail; a rule's note
and task are written once per address and bounce episode (DESIGN 1b).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from connector.bounces import BounceType
from connector.keap.models import MARKETABLE_STATUSES, EmailAddress, EmailField
from connector.pipeline.outcome import Outcome, Reason, SkipReason, StepKind, StepRecord
from connector.pipeline.target import Target, same_address
from connector.policy import Action, BounceEvent, ContactView, Plan, Policy, Strike, decide


def marketable(address: EmailAddress) -> bool | None:
    """Whether Keap would mail the address; ``None`` when the read does not say."""
    if address.is_opt_in is not None:
        return address.is_opt_in
    if address.email_opt_status is None:
        return None
    return address.email_opt_status in MARKETABLE_STATUSES


@dataclass(frozen=True)
class PastEvent:
    """An earlier event on the same contact, as its audit rows tell it."""

    event_id: int
    steps: Sequence[StepRecord]

    @property
    def target(self) -> StepRecord | None:
        return next((s for s in self.steps if s.kind is StepKind.TARGET), None)


@dataclass(frozen=True)
class PlannedStep:
    kind: StepKind
    subject: str = ""
    skip: Reason | None = None
    rules: tuple[int, ...] = ()
    expire: timedelta | None = None  # an opt-out the deciding rule lets expire (DESIGN 7a)


@dataclass(frozen=True)
class StepPlan:
    """The policy's plan for the event and the steps to carry it out, in order."""

    target: Target
    policy_plan: Plan
    steps: tuple[PlannedStep, ...]

    @property
    def reason(self) -> str:
        return self.policy_plan.reason


@dataclass(frozen=True)
class PlanInput:
    """Everything planning may know; gathered by the caller, so planning itself does no I/O."""

    policy: Policy
    target: Target
    bounce_type: BounceType
    occurred_at: datetime
    keap_count: int | None
    strikes: Sequence[Strike]
    last_open_time: datetime | None = None
    last_click_time: datetime | None = None
    past: Sequence[PastEvent] = ()
    protected: bool = False  # the contact carries one of the policy's protect_tags
    incident: str | None = None  # the domain, when an incident covering this bounce is open


def plan_steps(given: PlanInput) -> StepPlan:
    plan = decide(given.policy, _event(given), _view(given), given.strikes)
    steps: list[PlannedStep] = [PlannedStep(StepKind.TARGET)]
    steps += _destructive(plan, given.target, _blocker(given), _expiry(given.policy, plan))
    steps += [PlannedStep(StepKind.TAG_ADD, tag) for tag in plan.add_tags]
    steps += [PlannedStep(StepKind.TAG_REMOVE, tag) for tag in plan.remove_tags]
    written = _episode_writes(given)
    if plan.note is not None:
        by_index = {rule.index: rule for rule in given.policy.rules}
        rules = tuple(m.rule for m in plan.matched if by_index[m.rule].note)
        seen = written.get((StepKind.NOTE, ""), set())
        skip = _same_episode() if rules and set(rules) <= seen else None
        steps.append(PlannedStep(StepKind.NOTE, "", skip, rules))
    for title in plan.tasks:
        skip = _same_episode() if (StepKind.TASK, title) in written else None
        steps.append(PlannedStep(StepKind.TASK, title, skip))
    steps += _notifications(given.policy, plan)
    return StepPlan(given.target, plan, tuple(steps))


def _notifications(policy: Policy, plan: Plan) -> list[PlannedStep]:
    """One ``notify`` step per matching rule with ``notify = true``, after the task steps:
    the executor raises a ``rule_notify`` alert for it (DESIGN 7a)."""
    notifying = {rule.index for rule in policy.rules if rule.notify}
    return [
        PlannedStep(StepKind.NOTIFY, str(match.rule), rules=(match.rule,))
        for match in plan.matched
        if match.rule in notifying
    ]


def _same_episode() -> Reason:
    return Reason(SkipReason.SAME_EPISODE)


def _destructive(
    plan: Plan, target: Target, blocker: Reason | None, expire: timedelta | None
) -> list[PlannedStep]:
    """The steps that change the address, each with the skip the evidence already decides."""
    if plan.action is Action.NONE:
        return []
    if plan.action is Action.BLANK_EMAIL:
        steps = [PlannedStep(StepKind.BLANK_EMAIL, target.address.field)]
    elif plan.action is Action.PROMOTE:
        steps = [_promotion(target), PlannedStep(StepKind.OPT_OUT, expire=expire)]
    else:
        steps = [PlannedStep(StepKind.OPT_OUT, expire=expire)]
    if blocker is not None:
        return [replace(step, skip=blocker) for step in steps]
    if marketable(target.address) is False:
        status = Reason(SkipReason.ALREADY_NON_MARKETABLE, target.address.email_opt_status or "")
        steps = [replace(s, skip=status) if s.kind is StepKind.OPT_OUT else s for s in steps]
    return steps


def _blocker(given: PlanInput) -> Reason | None:
    """Why no step may change this address at all, whatever the step."""
    if not given.target.on_contact:
        return Reason(SkipReason.NOT_ON_CONTACT)
    if given.protected:
        return Reason(SkipReason.PROTECTED)
    if given.incident is not None:
        return Reason(SkipReason.INCIDENT_OPEN, given.incident)
    return None


def _expiry(policy: Policy, plan: Plan) -> timedelta | None:
    """The ``expire`` of the rule that decided the action (opt_out and promote rules only)."""
    if plan.action not in (Action.OPT_OUT, Action.PROMOTE) or plan.rule is None:
        return None
    return next((r.expire for r in policy.rules if r.index == plan.rule), None)


def _promotion(target: Target) -> PlannedStep:
    """Promote: the next marketable address (EMAIL2, then EMAIL3) into EMAIL1, when EMAIL1 is
    the one that bounced; otherwise the rule is an opt-out, and the skip says why."""
    if target.address.field != EmailField.EMAIL1:
        return PlannedStep(StepKind.PROMOTE, "", Reason(SkipReason.NOT_PRIMARY))
    spare = spare_address(target)
    if spare is None:
        return PlannedStep(StepKind.PROMOTE, "", Reason(SkipReason.NO_SPARE))
    return PlannedStep(StepKind.PROMOTE, spare.field)


def spare_address(target: Target) -> EmailAddress | None:
    for field in (EmailField.EMAIL2, EmailField.EMAIL3):
        found = target.contact.in_field(field)
        if found is not None and found.email and marketable(found) is True:
            return found
    return None


def _episode_writes(given: PlanInput) -> dict[tuple[StepKind, str], set[int]]:
    """Notes and tasks already written for this address in its current bounce episode.

    An episode ends when the address is marketable again: the last earlier event that saw it
    marketable right after one that saw it non-marketable starts the current one.
    """
    email = given.target.address.email
    mine = [p for p in sorted(given.past, key=lambda p: p.event_id) if _about(p, email)]
    seen = [_seen_marketable(p) for p in mine] + [marketable(given.target.address)]
    start = 0
    for index in range(1, len(seen)):
        if seen[index] is True and seen[index - 1] is False:
            start = index
    written: dict[tuple[StepKind, str], set[int]] = {}
    for past in mine[start:]:
        for step in past.steps:
            if step.kind in (StepKind.NOTE, StepKind.TASK) and step.outcome is Outcome.DONE:
                rules = (step.after or {}).get("rules") or ""
                key = (step.kind, step.subject)
                written.setdefault(key, set()).update(int(r) for r in rules.split(",") if r)
    return written


def _about(past: PastEvent, email: str) -> bool:
    target = past.target
    recorded = (target.after or {}).get("email") if target is not None else None
    return recorded is not None and same_address(recorded, email)


def _seen_marketable(past: PastEvent) -> bool | None:
    target = past.target
    status = (target.after or {}).get("marketable") if target is not None else None
    return {"yes": True, "no": False}.get(status or "")


def _event(given: PlanInput) -> BounceEvent:
    return BounceEvent(
        contact_id=given.target.contact.id,
        email=given.target.address.email,
        bounce_type=given.bounce_type,
        occurred_at=given.occurred_at,
        keap_count=given.keap_count,
    )


def _view(given: PlanInput) -> ContactView:
    contact = given.target.contact
    fields = {
        "contact_id": contact.id,
        "given_name": contact.given_name or "",
        "family_name": contact.family_name or "",
        "email": given.target.address.email,
        "email_field": given.target.address.field,
    }
    return ContactView(
        contact_id=contact.id,
        email_field=given.target.address.field,
        fields=fields,
        last_open_time=given.last_open_time,
        last_click_time=given.last_click_time,
    )


def target_record(target: Target, outcome: Outcome) -> StepRecord:
    """The ``target`` step: which address, from which field, on what evidence, seen how."""
    seen = marketable(target.address)
    return StepRecord(
        kind=StepKind.TARGET,
        subject="",
        outcome=outcome,
        after={
            "email": target.address.email,
            "field": target.address.field,
            "evidence": target.reason,
            "evidence_code": target.evidence.name,
            "status": target.address.email_opt_status,
            "marketable": None if seen is None else ("yes" if seen else "no"),
            # The contact's name as read, so the report can name the person without Keap.
            "given_name": target.contact.given_name or None,
            "family_name": target.contact.family_name or None,
        },
    )
