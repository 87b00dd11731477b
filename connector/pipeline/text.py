"""The Keap note's words for what was done, taken from the outcome record, not from the plan.

The note is written after the destructive step has its outcome, so it can never say "opted out"
about an address whose opt-out was skipped.

Everything written to Keap (note title and text, task title and description) passes through
``keap_line``/``keap_text`` here, so a name or address from outside reaches Keap as plain text:
no control character (our own line breaks aside), bidi override or zero-width character.
"""

from __future__ import annotations

from connector.pipeline.outcome import Outcome, StepKind, StepRecord
from connector.pipeline.plan import StepPlan
from connector.text import plain, plain_lines

_VERB = {StepKind.OPT_OUT: "opt out", StepKind.BLANK_EMAIL: "remove", StepKind.PROMOTE: "promote"}


def action_sentence(plan: StepPlan, step: StepRecord | None) -> list[str]:
    """One line saying what happened to the address, plus its old value when it changed."""
    email = plan.target.address.email
    rule = plan.policy_plan.rule
    if step is None:
        return [f"No change to the address {email}."]
    if step.outcome is Outcome.DONE:
        spare = (step.before or {}).get("spare") or ""
        moved = (step.before or {}).get("spare_field") or ""
        done = {
            StepKind.OPT_OUT: f"Opted out the address {email} (rule {rule}).",
            StepKind.BLANK_EMAIL: (
                f"Removed the address {email} from {plan.target.address.field} (rule {rule})."
            ),
            StepKind.PROMOTE: (
                f"Made {spare} the primary address (EMAIL1); the bounced address {email} "
                f"moved to {moved} (rule {rule})."
            ),
        }
        return [done[step.kind], f"Old address: {email}"]
    verb = _VERB.get(step.kind, step.kind.value)
    why = f": {step.reason}" if step.reason is not None else f" ({step.outcome.value})"
    return [f"Did not {verb} the address {email} (rule {rule}){why}."]


def note_text(plan: StepPlan, destructive: list[StepRecord]) -> str:
    """The policy's account of the bounce with the outcome lines put in after its first line."""
    facts = (plan.policy_plan.note or "").split("\n") if plan.policy_plan.note else []
    head, rest = facts[:1], facts[1:]
    lines = [line for step in destructive for line in action_sentence(plan, step)]
    if not destructive:
        lines = action_sentence(plan, None)
    return keap_text("\n".join([*head, *dict.fromkeys(lines), *rest]))


def keap_line(value: str) -> str:
    """A title for Keap: one line of plain text, runs of whitespace made one space."""
    return " ".join(plain(value).split())


def keap_text(value: str) -> str:
    """A note or description for Keap: our own lines, each of plain text."""
    return plain_lines(value)
