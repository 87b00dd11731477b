"""What ``connector policy show`` and ``policy check`` print about a loaded policy.

Plain rows and text, no rich markup, so the CLI renders them and tests compare them; kept out
of ``load`` so reading a file and describing a policy can each be read on its own.
"""

from __future__ import annotations

from connector.bounces import BounceType
from connector.durations import format_duration
from connector.policy.model import Action, Policy, Rule

RULE_COLUMNS = (
    "rule",
    "bounce",
    "when",
    "within",
    "reset on engagement",
    "action",
    "add tags",
    "remove tags",
    "note",
    "tasks",
    "domains",
    "expire",
    "notify",
)


def effective_rules(policy: Policy) -> list[dict[str, str]]:
    """The rules as display rows keyed by ``RULE_COLUMNS``, for ``connector policy show``."""
    return [
        dict(
            zip(
                RULE_COLUMNS,
                (
                    str(rule.index),
                    ", ".join(rule.bounce_types),
                    str(rule.when),
                    "" if rule.within is None else format_duration(rule.within),
                    "yes" if rule.reset_on_engagement else "",
                    rule.action.value,
                    ", ".join(rule.add_tags),
                    ", ".join(rule.remove_tags),
                    "yes" if rule.note else "",
                    "; ".join(rule.tasks),
                    _domains(rule),
                    "" if rule.expire is None else format_duration(rule.expire),
                    "yes" if rule.notify else "",
                ),
                strict=True,
            )
        )
        for rule in policy.rules
    ]


def _domains(rule: Rule) -> str:
    shown = ", ".join(rule.domains) if rule.domains else ("all" if rule.exclude_domains else "")
    if rule.exclude_domains:
        shown += f"; not {', '.join(rule.exclude_domains)}"
    return shown


def policy_summary(policy: Policy) -> str:
    """A few lines that answer "what will this policy do to my contacts?" at a glance."""
    settings = policy.settings
    lines = [
        f"{policy.source}: {len(policy.rules)} rule(s); dedupe window "
        f"{format_duration(settings.dedupe_window)}; note title {settings.note_title!r}",
    ]
    if settings.protect_tags:
        lines.append(
            f"protected (never opted out, blanked or promoted): contacts tagged "
            f"{', '.join(repr(t) for t in settings.protect_tags)}"
        )
    for action in (Action.OPT_OUT, Action.PROMOTE, Action.BLANK_EMAIL):
        acting = [rule.name for rule in policy.rules if rule.action is action]
        lines.append(f"{action.value}: {', '.join(acting) if acting else 'never'}")
    covered = {bounce for rule in policy.rules for bounce in rule.bounce_types}
    idle = [bounce.value for bounce in BounceType if bounce not in covered]
    lines.append(f"no rule (nothing is done): {', '.join(idle) if idle else 'none'}")
    expiring = [
        f"{rule.name} after {format_duration(rule.expire)}"
        for rule in policy.rules
        if rule.expire is not None
    ]
    if expiring:
        lines.append(f"re-opt-in (expire): {', '.join(expiring)}")
    notifying = [rule.name for rule in policy.rules if rule.notify]
    if notifying:
        lines.append(f"alert on each match (notify): {', '.join(notifying)}")
    lines.append(_incidents(policy))
    mapping = ", ".join(f"{status} -> {slug}" for status, slug in policy.status_map.items())
    lines.append(f"sync status map: {mapping or 'empty (sync finds nothing)'}")
    return "\n".join(lines)


def _incidents(policy: Policy) -> str:
    incidents = policy.incidents
    if incidents is None:
        return "incidents: off (no [incidents] table)"
    return (
        f"incidents: {incidents.threshold} or more of {', '.join(incidents.bounce_types)} at one "
        f"domain within {format_duration(incidents.within)} open an incident there; while open, "
        "those bounces at that domain opt out, blank or promote nothing"
    )
