"""``decide``: one bounce, the contact and its history in; the plan out (DESIGN.md 7).

Pure: no I/O and no clock, time comes only from the arguments. Purity is what lets the worker
re-plan a retried event, ``sync --dry-run`` preview through the same code, and the tests
enumerate behaviour without a clock or a Keap account. The note text and task titles are
rendered here too, from a small template language that cannot raise or reach attributes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from connector.policy.model import (
    Action,
    BounceEvent,
    ContactView,
    Plan,
    Policy,
    Rule,
    RuleMatch,
    Strike,
)


@dataclass(frozen=True)
class _Match:
    rule: Rule
    count: int
    keap_count_used: bool


def decide(
    policy: Policy, event: BounceEvent, contact: ContactView, history: Sequence[Strike]
) -> Plan:
    """Plan the remediation of one bounce. Pure: no I/O, and time comes only from the arguments.

    A rule applies when the event's bounce type is one of its types, the address's domain is
    one its ``domains`` / ``exclude_domains`` admit, and its count matches its ``when``. Every
    applying rule contributes its tags, tasks and note; the action is the most severe among
    them, decided by the first (lowest-numbered) rule with that severity. See
    :func:`count_strikes` for how a rule counts.
    """
    engaged = last_engagement(contact)
    matches: list[_Match] = []
    for rule in policy.rules:
        if event.bounce_type in rule.bounce_types and rule.covers(event.email):
            count, used_keap = _count(rule, event, history, engaged)
            if rule.when.matches(count):
                matches.append(_Match(rule, count, used_keap))
    return _plan(policy, event, contact, matches)


def count_strikes(
    rule: Rule, event: BounceEvent, history: Iterable[Strike], engaged: datetime | None
) -> int:
    """The count ``rule`` compares with its ``when`` for ``event``.

    The current event always counts 1. A history strike counts too when all of these hold:

    - its bounce type is one of the rule's types;
    - it did not happen after the event (replaying events out of order must not let a later
      bounce count toward an earlier one);
    - with ``within``: ``event.occurred_at - strike.occurred_at <= within`` (the edge is inside);
    - with ``reset_on_engagement``: it happened strictly after ``engaged``, the later of the
      address's last open and last click. Each open or click resets the count to zero, so only
      the last one matters: if the address was engaged after the most recent counted bounce the
      count starts again at 1, and strikes after the engagement keep counting. A strike at the
      very instant of the engagement is treated as before it (the person read mail after it).

    Naive datetimes are taken as UTC so mixed inputs compare instead of raising.

    Keap's own count (``event.keap_count``) replaces ours when it is larger, but only for rules
    counting all time (no ``within``, no ``reset_on_engagement``): Keap may have counted bounces
    before the connector was installed or while it was down, and those are real strikes, but
    Keap's number says nothing about when they happened or whether mail was opened in between.
    """
    return _count(rule, event, history, engaged)[0]


def last_engagement(contact: ContactView) -> datetime | None:
    times = [
        _aware(moment)
        for moment in (contact.last_open_time, contact.last_click_time)
        if moment is not None
    ]
    return max(times, default=None)


def _count(
    rule: Rule, event: BounceEvent, history: Iterable[Strike], engaged: datetime | None
) -> tuple[int, bool]:
    now = _aware(event.occurred_at)
    engaged = None if engaged is None or not rule.reset_on_engagement else _aware(engaged)
    ours = 1
    for strike in history:
        if strike.bounce_type in rule.bounce_types and _counts(rule, strike, now, engaged):
            ours += 1
    keap = event.keap_count
    if keap is not None and rule.counts_all_time and keap > ours:
        return keap, True
    return ours, False


def _counts(rule: Rule, strike: Strike, now: datetime, engaged: datetime | None) -> bool:
    moment = _aware(strike.occurred_at)
    if moment > now or (engaged is not None and moment <= engaged):
        return False
    return rule.within is None or now - moment <= rule.within


def _aware(moment: datetime) -> datetime:
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def _plan(
    policy: Policy, event: BounceEvent, contact: ContactView, matches: Sequence[_Match]
) -> Plan:
    decider = max(matches, key=lambda match: match.rule.action.severity, default=None)
    add_tags = _unique(tag for match in matches for tag in match.rule.add_tags)
    remove_tags = _unique(
        tag for match in matches for tag in match.rule.remove_tags if tag not in add_tags
    )
    values = _template_values(event, contact)
    tasks = _unique(_task_title(task, values) for match in matches for task in match.rule.tasks)
    plan = Plan(
        action=Action.NONE if decider is None else decider.rule.action,
        rule=None if decider is None else decider.rule.index,
        add_tags=add_tags,
        remove_tags=remove_tags,
        note=None,
        note_title=policy.settings.note_title,
        tasks=tasks,
        matched=tuple(RuleMatch(match.rule.index, match.count) for match in matches),
        reason=_reason(event, decider),
    )
    if any(match.rule.note for match in matches):
        return _with_note(plan, event, matches)
    return plan


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _reason(event: BounceEvent, decider: _Match | None) -> str:
    """Short enough for Keap's opt-out reason, and names what a support person would ask."""
    label = event.bounce_type.label
    if decider is None:
        return f"{label}: no bounce policy rule matched"
    return f"{label} (count {decider.count}) - bounce policy rule {decider.rule.index}"


def _with_note(plan: Plan, event: BounceEvent, matches: Sequence[_Match]) -> Plan:
    return replace(plan, note=_note_text(plan, event, matches))


def _note_text(plan: Plan, event: BounceEvent, matches: Sequence[_Match]) -> str:
    """A note a Keap user can read cold: what bounced, which rules matched and why.

    What became of the address is not decided here: the executor puts that line in (second)
    from the outcome of the step, so a skipped opt-out is never written up as done.
    """
    lines = [f"{event.bounce_type.label} ({event.bounce_type.value}) for {event.email}."]
    if plan.add_tags:
        lines.append("Tags added: " + ", ".join(plan.add_tags))
    if plan.remove_tags:
        lines.append("Tags removed: " + ", ".join(plan.remove_tags))
    if plan.tasks:
        lines.append("Tasks: " + "; ".join(plan.tasks))
    lines.append("Matched: " + "; ".join(_match_text(match) for match in matches))
    return "\n".join(lines)


def _match_text(match: _Match) -> str:
    keap = " (Keap's own count, larger than ours)" if match.keap_count_used else ""
    return f"rule {match.rule.index} ({match.rule.when}): count {match.count}{keap}"


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders; unknown names render empty and nothing here can raise.

    Not ``str.format``: policy templates must not reach attributes (``{x.__class__}``), and a
    stray brace in a task title must not crash the worker. ``{{`` and ``}}`` are literal braces.
    """

    def fill(found: re.Match[str]) -> str:
        token = found.group(0)
        if found.group(1) is None:
            return token[0]
        name = found.group(1).strip()
        value = values.get(name)
        if value is None:
            value = values.get(name.lower())
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(fill, template)


def _task_title(template: str, values: Mapping[str, str]) -> str:
    """A one-line title: empty fields must not leave doubled or trailing spaces behind."""
    return " ".join(render_template(template, values).split())


def _template_values(event: BounceEvent, contact: ContactView) -> dict[str, str]:
    """Contact fields, plus the event's own facts under names contact fields never use."""
    values = {
        "contact_id": event.contact_id,
        "bounced_email": event.email,
        "bounce_type": event.bounce_type.value,
        "bounce_label": event.bounce_type.label,
    }
    values.update(contact.fields)
    return values
