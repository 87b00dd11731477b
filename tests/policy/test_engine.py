"""decide (DESIGN.md section 7): counting, the plan, the note, templating; pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.bounces import BounceType
from connector.policy import (
    Action,
    BounceEvent,
    ContactView,
    Plan,
    Policy,
    PolicySettings,
    Rule,
    RuleMatch,
    Strike,
    decide,
    parse_when,
    render_template,
)
from tests.policy.builders import (
    EMAIL,
    HB,
    SB,
    T0,
    contact,
    event,
    plan_for,
    policies,
    policy_of,
    situations,
    strikes,
)

# --- when --------------------------------------------------------------------------------------

WHEN_TABLE = [
    # (when, count, matches)
    ("always", 1, True),
    ("always", 7, True),
    ("exactly 1", 1, True),
    ("exactly 1", 2, False),
    ("exactly 2", 1, False),
    ("exactly 2", 2, True),
    ("exactly 2", 3, False),
    ("at least 2", 1, False),
    ("at least 2", 2, True),
    ("at least 2", 3, True),
    ("more than 2", 2, False),
    ("more than 2", 3, True),
    ("more than 0", 1, True),
    ("  More   Than 2 ", 3, True),
    ("AT LEAST 1", 1, True),
]


@pytest.mark.parametrize(("when", "count", "matches"), WHEN_TABLE)
def test_when_forms_and_boundaries(when: str, count: int, matches: bool) -> None:
    assert parse_when(when).matches(count) is matches
    policy = policy_of({"bounce": "hard_bounce", "when": when, "add_tags": ["T"]})
    plan = plan_for(policy, strikes(HB, *range(1, count)))
    assert (plan.matched == (RuleMatch(1, count),)) is matches
    assert plan.add_tags == (("T",) if matches else ())


def test_add_wins_when_a_conflict_could_not_be_ruled_out_at_load_time() -> None:
    adder = Rule(1, (HB,), parse_when("always"), add_tags=("X", "Y"))
    remover = Rule(2, (HB,), parse_when("always"), remove_tags=("X", "Z"))
    policy = Policy((adder, remover), PolicySettings(), {})
    plan = plan_for(policy)
    assert plan.add_tags == ("X", "Y")
    assert plan.remove_tags == ("Z",)


# --- counting: windows, engagement, Keap's count ----------------------------------------------


def count_for(
    rule: Mapping[str, object], history: Sequence[Strike], kw: Mapping[str, object]
) -> int:
    policy = policy_of({"add_tags": ["T"], "when": "always", **rule})
    keap_count = kw.get("keap_count")
    ev = event(keap_count=keap_count if isinstance(keap_count, int) else None)
    times = {k: v for k, v in kw.items() if isinstance(v, datetime)}
    who = contact(opened=times.get("opened"), clicked=times.get("clicked"))
    (match,) = plan_for(policy, history, ev, who).matched
    return match.count


DAY = timedelta(days=1)
COUNT_TABLE = [
    # (rule overrides, history, contact/event keywords, expected count)
    ({}, [], {}, 1),
    ({}, strikes(HB, 1, 2), {}, 3),
    ({}, strikes(SB, 1, 2), {}, 1),
    ({"bounce": ["hard_bounce", "soft_bounce_general"]}, strikes(HB, 1) + strikes(SB, 2), {}, 3),
    ({}, strikes(HB, -1, 1), {}, 2),
    ({"within": "30d"}, strikes(HB, 29, 30, 31), {}, 3),
    ({"within": "30d"}, strikes(HB, 30.001), {}, 1),
    ({"within": "12h"}, strikes(HB, 0.25, 0.75), {}, 2),
    ({"reset_on_engagement": True}, strikes(HB, 3, 2), {"opened": T0 - DAY}, 1),
    ({"reset_on_engagement": True}, strikes(HB, 5, 3, 1), {"opened": T0 - 2 * DAY}, 2),
    ({"reset_on_engagement": True}, strikes(HB, 5, 3, 1), {"clicked": T0 - 4 * DAY}, 3),
    (
        {"reset_on_engagement": True},
        strikes(HB, 5, 3, 1),
        {"opened": T0 - 4 * DAY, "clicked": T0 - 2 * DAY},
        2,
    ),
    ({"reset_on_engagement": True}, strikes(HB, 2), {"opened": T0 - 2 * DAY}, 1),
    ({"reset_on_engagement": True}, strikes(HB, 2, 1), {"opened": T0 + DAY}, 1),
    ({}, strikes(HB, 3, 2), {"opened": T0 - DAY}, 3),
    (
        {"within": "30d", "reset_on_engagement": True},
        strikes(HB, 40, 20, 10),
        {"opened": T0 - 15 * DAY},
        2,
    ),
    ({}, strikes(HB, 1), {"keap_count": 5}, 5),
    ({}, strikes(HB, 1, 2, 3), {"keap_count": 2}, 4),
    ({"within": "30d"}, strikes(HB, 1), {"keap_count": 5}, 2),
    ({"reset_on_engagement": True}, strikes(HB, 1), {"keap_count": 5}, 2),
]


@pytest.mark.parametrize(("rule", "history", "kw", "expected"), COUNT_TABLE)
def test_counting(
    rule: Mapping[str, object], history: list[Strike], kw: dict[str, object], expected: int
) -> None:
    assert count_for({"bounce": "hard_bounce", **rule}, history, kw) == expected


def test_naive_and_aware_times_mix_without_raising() -> None:
    naive = [Strike(HB, datetime(2024, 5, 31, 12)), Strike(HB, datetime(2024, 4, 1))]
    offset = timezone(timedelta(hours=-5))
    ev = event(at=datetime(2024, 6, 1, 7, tzinfo=offset))
    policy = policy_of(
        {"bounce": "hard_bounce", "within": "30d", "reset_on_engagement": True, "note": True}
    )
    who = contact(opened=datetime(2024, 5, 1))
    assert plan_for(policy, naive, ev, who).matched == (RuleMatch(1, 2),)


@pytest.mark.parametrize("bounce", list(BounceType))
def test_every_bounce_type_reaches_only_its_own_rule(bounce: BounceType) -> None:
    policy = policy_of(*({"bounce": b.value, "add_tags": [b.label]} for b in BounceType))
    index = list(BounceType).index(bounce) + 1
    plan = plan_for(policy, strikes(bounce, 1), event(bounce))
    assert plan.matched == (RuleMatch(index, 2),)
    assert plan.add_tags == (bounce.label,)
    assert bounce.label in plan.reason


# --- the plan ----------------------------------------------------------------------------------

SEVERE = policy_of(
    {"bounce": "hard_bounce", "add_tags": ["A"], "note": True},
    {"bounce": "hard_bounce", "action": "opt_out", "when": "at least 2", "add_tags": ["B"]},
    {"bounce": "hard_bounce", "action": "blank_email", "when": "at least 3", "remove_tags": ["C"]},
    {"bounce": "hard_bounce", "action": "opt_out", "when": "at least 3", "task": "t"},
)


@pytest.mark.parametrize(
    ("count", "action", "rule", "matched"),
    [
        (1, Action.NONE, 1, (1,)),
        (2, Action.OPT_OUT, 2, (1, 2)),
        (3, Action.BLANK_EMAIL, 3, (1, 2, 3, 4)),
    ],
)
def test_the_most_severe_action_wins_and_the_first_such_rule_decides(
    count: int, action: Action, rule: int, matched: tuple[int, ...]
) -> None:
    plan = plan_for(SEVERE, strikes(HB, *range(1, count)))
    assert (plan.action, plan.rule) == (action, rule)
    assert tuple(m.rule for m in plan.matched) == matched
    assert all(m.count == count for m in plan.matched)


def test_no_match_plans_nothing() -> None:
    plan = plan_for(SEVERE, ev=event(SB))
    assert plan == Plan(Action.NONE, None, (), (), None, "Bounce remediation", (), (), plan.reason)
    assert plan.does_nothing
    assert "Soft Bounce - General" in plan.reason


@pytest.mark.parametrize("action", ["opt_out", "blank_email"])
def test_note_keeps_the_old_address_and_says_why(action: str) -> None:
    policy = policy_of(
        {
            "bounce": "hard_bounce",
            "when": "at least 2",
            "action": action,
            "note": True,
            "add_tags": ["Gone"],
            "remove_tags": ["Live"],
        },
    )
    plan = plan_for(policy, strikes(HB, 1), event(keap_count=None))
    assert plan.note is not None
    for needle in [
        EMAIL,
        "rule 1",
        "count 2",
        "Hard Bounce",
        "hard_bounce",
        "Gone",
        "Live",
    ]:
        assert needle in plan.note, needle
    assert plan.note_title == "Bounce remediation"
    assert plan.reason == "Hard Bounce (count 2) - bounce policy rule 1"


def test_note_says_when_keaps_count_was_used() -> None:
    policy = policy_of(
        {"bounce": "hard_bounce", "when": "at least 3", "action": "opt_out", "note": True}
    )
    plan = plan_for(policy, ev=event(keap_count=4))
    assert plan.matched == (RuleMatch(1, 4),)
    assert plan.note is not None
    assert "Keap's own count" in plan.note


def test_note_only_when_a_matching_rule_asks() -> None:
    policy = policy_of({"bounce": "hard_bounce", "add_tags": ["A"]})
    assert plan_for(policy).note is None


def test_tasks_render_from_contact_fields() -> None:
    policy = policy_of(
        {
            "bounce": "hard_bounce",
            "task": [
                "Find a new email address for {given_name} {family_name}",
                "Call {company} about {bounced_email} ({bounce_label})",
            ],
        },
    )
    plan = plan_for(policy, who=contact(fields={"given_name": "Jane"}))
    assert plan.tasks == (
        "Find a new email address for Jane",
        f"Call about {EMAIL} (Hard Bounce)",
    )


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("{name}", "Jane"),
        ("{ name }", "Jane"),
        ("{NAME}", "Jane"),
        ("{missing}", ""),
        ("{{name}}", "{name}"),
        ("{", "{"),
        ("}", "}"),
        ("{name", "{name"),
        ("{0}{}{name!r:>10}", ""),
        ("{name.__class__}", ""),
        ("{x{name}}", "{xJane}"),
    ],
)
def test_render_template_never_raises(template: str, rendered: str) -> None:
    assert render_template(template, {"name": "Jane"}) == rendered


@given(st.text(max_size=60), st.dictionaries(st.text(max_size=8), st.text(max_size=8)))
def test_render_template_on_anything(template: str, values: dict[str, str]) -> None:
    assert isinstance(render_template(template, values), str)


# --- properties --------------------------------------------------------------------------------


def oracle_count(rule: Rule, ev: BounceEvent, who: ContactView, history: list[Strike]) -> int:
    """The count as count_strikes' docstring defines it, written independently and slowly."""

    def utc(moment: datetime) -> datetime:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    now = utc(ev.occurred_at)
    seen = [utc(m) for m in (who.last_open_time, who.last_click_time) if m is not None]
    engaged = max(seen) if seen and rule.reset_on_engagement else None
    kept = [
        s
        for s in history
        if s.bounce_type in rule.bounce_types
        and utc(s.occurred_at) <= now
        and (rule.within is None or utc(s.occurred_at) >= now - rule.within)
        and (engaged is None or utc(s.occurred_at) > engaged)
    ]
    ours = 1 + len(kept)
    if ev.keap_count is not None and rule.within is None and not rule.reset_on_engagement:
        return max(ours, ev.keap_count)
    return ours


@settings(max_examples=300)
@given(policies(), situations())
def test_decide_properties(
    policy: Policy, situation: tuple[BounceEvent, ContactView, list[Strike]]
) -> None:
    ev, who, history = situation
    plan = decide(policy, ev, who, history)
    expected = [
        RuleMatch(rule.index, oracle_count(rule, ev, who, history))
        for rule in policy.rules
        if ev.bounce_type in rule.bounce_types
        and rule.when.matches(oracle_count(rule, ev, who, history))
    ]
    assert list(plan.matched) == expected
    by_index = {rule.index: rule for rule in policy.rules}
    actions = [by_index[m.rule].action for m in plan.matched]
    assert plan.action is max(actions, key=lambda a: a.severity, default=Action.NONE)
    if plan.rule is not None:
        assert by_index[plan.rule].action is plan.action
    assert not set(plan.add_tags) & set(plan.remove_tags)
    assert (plan.note is None) == (not any(by_index[m.rule].note for m in plan.matched))
    if plan.note is not None:
        assert EMAIL in plan.note
