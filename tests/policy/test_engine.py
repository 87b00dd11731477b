"""The policy file (DESIGN.md section 7): validation messages, counting, and decide's plan."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.bounces import BounceType
from connector.errors import PolicyError
from connector.policy import (
    DEFAULT_SOURCE,
    RULE_COLUMNS,
    Action,
    BounceEvent,
    ContactView,
    Plan,
    Policy,
    PolicySettings,
    Rule,
    RuleMatch,
    Strike,
    check_policy_file,
    decide,
    effective_rules,
    format_duration,
    load_policy,
    parse_duration,
    parse_policy,
    parse_when,
    policy_summary,
    render_template,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
HB = BounceType.HARD_BOUNCE
SB = BounceType.SOFT_BOUNCE_GENERAL
EMAIL = "jane@example.com"


def toml_value(value: object) -> str:
    """Enough TOML for tests: JSON strings are valid TOML basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def rules_toml(*rules: Mapping[str, object]) -> str:
    tables = [
        "[[rule]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in r.items()) for r in rules
    ]
    return "\n".join(tables)


def policy_of(*rules: Mapping[str, object]) -> Policy:
    return parse_policy(rules_toml(*rules), "test.toml")


def event(bounce: BounceType = HB, at: datetime = T0, keap_count: int | None = None) -> BounceEvent:
    return BounceEvent("42", EMAIL, bounce, at, keap_count)


def contact(
    opened: datetime | None = None,
    clicked: datetime | None = None,
    fields: Mapping[str, str] | None = None,
) -> ContactView:
    default = {"given_name": "Jane", "family_name": "Doe", "email": EMAIL}
    return ContactView("42", EMAIL, default if fields is None else fields, opened, clicked)


def strikes(bounce: BounceType, *days_ago: float) -> list[Strike]:
    return [Strike(bounce, T0 - timedelta(days=d)) for d in days_ago]


def plan_for(
    policy: Policy,
    history: Sequence[Strike] = (),
    ev: BounceEvent | None = None,
    who: ContactView | None = None,
) -> Plan:
    return decide(policy, ev or event(), who or contact(), history)


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


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("sometimes", "not a count condition"),
        ("exactly", "needs a number"),
        ("always 2", "takes no number"),
        ("exactly 0", "can never match"),
        ("at least 0", "can never match"),
        ("exactly -1", "not a count condition"),
        ("exactly 1.5", "not a count condition"),
        ("more than 99999999", "at most"),
        ("> 2", "not a count condition"),
    ],
)
def test_bad_when(when: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_when(when)


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("10m", timedelta(minutes=10)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 3 d ", timedelta(days=3)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "d", "10x", "1.5d", "-1d", "10M", "1y", "99999w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|limit"):
        parse_duration(text)


def test_zero_duration_only_where_allowed() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0d")
    assert parse_duration("0s", allow_zero=True) == timedelta(0)


@pytest.mark.parametrize(("text", "shown"), [("30d", "30d"), ("2w", "2w"), ("90m", "90m")])
def test_format_duration_reads_like_the_file(text: str, shown: str) -> None:
    assert format_duration(parse_duration(text)) == shown


# --- validation: every problem names the rule, its bounce type and the field -----------------

RULE_PROBLEMS = [
    ({"bounce": "hard_bounce", "when": "sometimes", "note": True}, "rule 1 (hard_bounce): when:"),
    ({"bounce": "hard_bounce", "when": 3, "note": True}, "rule 1 (hard_bounce): when: expected"),
    ({"bounce": "hard", "note": True}, "rule 1 (hard): bounce: unknown bounce type 'hard'"),
    ({"bounce": ["hard_bounce", "x"], "note": True}, "rule 1 (hard_bounce/x): bounce: unknown"),
    ({"bounce": [], "note": True}, "rule 1 (no bounce type): bounce: name at least one"),
    ({"bounce": 5, "note": True}, "rule 1 (no bounce type): bounce: expected"),
    ({"note": True}, "rule 1 (no bounce type): bounce: required"),
    ({"bounce": "auto_reply", "action": "nuke"}, "rule 1 (auto_reply): action: unknown action"),
    ({"bounce": "auto_reply", "note": "yes"}, "rule 1 (auto_reply): note: expected true or false"),
    ({"bounce": "auto_reply", "note": True, "within": "30x"}, "rule 1 (auto_reply): within:"),
    ({"bounce": "auto_reply", "note": True, "within": "0d"}, "rule 1 (auto_reply): within:"),
    (
        {"bounce": "auto_reply", "note": True, "colour": "red"},
        "rule 1 (auto_reply): colour: unknown",
    ),
    ({"bounce": "auto_reply", "add_tags": [""]}, "rule 1 (auto_reply): add_tags: a tag name"),
    ({"bounce": "auto_reply", "add_tags": [1]}, "rule 1 (auto_reply): add_tags: expected"),
    ({"bounce": "auto_reply", "task": " "}, "rule 1 (auto_reply): task: a task title"),
    (
        {"bounce": "auto_reply", "reset_on_engagement": 1, "note": True},
        "rule 1 (auto_reply): reset_on_engagement: expected true or false",
    ),
    ({"bounce": "auto_reply"}, "rule 1 (auto_reply): action: the rule does nothing"),
    ({"bounce": "auto_reply", "action": "none"}, "rule 1 (auto_reply): action: the rule does"),
    (
        {"bounce": "auto_reply", "add_tags": ["T"], "remove_tags": ["T"]},
        "rule 1 (auto_reply): remove_tags: 'T' is also in add_tags",
    ),
]


@pytest.mark.parametrize(("rule", "problem"), RULE_PROBLEMS)
def test_rule_problems_name_rule_bounce_and_field(rule: Mapping[str, object], problem: str) -> None:
    good = {"bounce": "hard_bounce", "note": True}
    text = rules_toml(good, rule).replace("rule 1", "rule 2")
    expected = problem.replace("rule 1 ", "rule 2 ")
    path = Path("policy.toml")
    path.write_text(text, encoding="utf-8")
    problems = check_policy_file(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"policy.toml: {expected}"), problems
    with pytest.raises(PolicyError, match="invalid policy"):
        parse_policy(text, "policy.toml")


FILE_PROBLEMS = [
    ("rules = 1\n", "rules: unknown key; allowed keys here: settings, rule, sync"),
    ("[settings]\ncolour = 1\n", "settings.colour: unknown key; allowed keys here: dedupe"),
    ('[settings]\ndedupe_window = "soon"\n', "settings.dedupe_window: 'soon' is not a duration"),
    ('[settings]\nnote_title = " "\n', "settings.note_title: the note title cannot be empty"),
    ("[sync]\nextra = 1\n", "sync.extra: unknown key"),
    ("[sync]\nstatus_map = 1\n", "sync.status_map: expected a table"),
    ('[sync.status_map]\nNOPE = "hard_bounce"\n', "sync.status_map.NOPE: not a Keap email status"),
    ('[sync.status_map]\nCONFIRMED = "hard_bounce"\n', "sync.status_map.CONFIRMED: a marketable"),
    ('[sync.status_map]\nSPAM = "spam"\n', "sync.status_map.SPAM: unknown bounce type 'spam'"),
    ("rule = 1\n", "rule: expected an array of tables"),
    ("rule = [1]\n", "rule 1 (no bounce type): expected a table"),
    ("[[rule]\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "problem"), FILE_PROBLEMS)
def test_file_problems(text: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.toml")
    assert f"p.toml: {problem}" in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    text = "[settings]\ncolour = 1\n" + rules_toml(
        {"bounce": "hard_bounce", "when": "never", "note": True},
        {"bounce": "nope", "note": True},
        {"bounce": "auto_reply"},
    )
    path = Path("p.toml")
    path.write_text(text, encoding="utf-8")
    problems = check_policy_file(path)
    assert [p.split(":")[1].strip() for p in problems] == [
        "settings.colour",
        "rule 1 (hard_bounce)",
        "rule 2 (nope)",
        "rule 3 (auto_reply)",
    ]


def test_bounce_may_be_a_string_a_label_or_a_list() -> None:
    policy = policy_of(
        {"bounce": "Soft Bounce – Mailbox Full", "note": True},
        {"bounce": ["hard_bounce", "Hard Bounce", "mailbox full"], "note": True},
    )
    assert policy.rules[0].bounce_types == (BounceType.SOFT_BOUNCE_MAILBOX_FULL,)
    assert policy.rules[1].bounce_types == (HB, BounceType.SOFT_BOUNCE_MAILBOX_FULL)


def test_defaults_of_an_empty_file() -> None:
    policy = parse_policy("", "empty.toml")
    assert policy.rules == ()
    assert policy.settings == PolicySettings(timedelta(minutes=10), "Bounce remediation")
    assert dict(policy.status_map) == {"HARD_BOUNCE": HB, "BOUNCE": BounceType.GENERAL_BOUNCE}
    assert plan_for(policy).does_nothing


def test_status_map_replaces_the_default_and_tolerates_unknown_statuses() -> None:
    policy = parse_policy('[sync.status_map]\nspam = "Unsubscribe Request"\n', "p.toml")
    assert dict(policy.status_map) == {"SPAM": BounceType.UNSUBSCRIBE_REQUEST}
    assert policy.bounce_type_for_status("Spam") is BounceType.UNSUBSCRIBE_REQUEST
    assert policy.bounce_type_for_status("HARD_BOUNCE") is None
    assert policy.bounce_type_for_status("unknown_default_open_api") is None


def test_settings_are_read() -> None:
    policy = parse_policy('[settings]\ndedupe_window = "0s"\nnote_title = "Bounces"\n', "p")
    assert policy.settings == PolicySettings(timedelta(0), "Bounces")


# --- tag conflicts -----------------------------------------------------------------------------

ADDS_X = {"bounce": "hard_bounce", "add_tags": ["X"]}
REMOVES_X = {"bounce": "hard_bounce", "remove_tags": ["X"]}
CONFLICTS = [
    # (adder overrides, remover overrides, conflict expected)
    ({"when": "exactly 1"}, {"when": "exactly 2"}, False),
    ({"when": "exactly 2"}, {"when": "at least 2"}, True),
    ({"when": "at least 3"}, {"when": "exactly 2"}, False),
    ({"when": "always"}, {"when": "more than 5"}, True),
    ({"bounce": "auto_reply"}, {}, False),
    ({"bounce": ["auto_reply", "hard_bounce"]}, {}, True),
    # The adder counts less than the remover (a 30-day window inside all time), so the adder's
    # count can be 1 while the remover's is 3: both match.
    ({"when": "exactly 1", "within": "30d"}, {"when": "exactly 3"}, True),
    # The remover's count never exceeds the adder's: remover "exactly 1" (count 1) needs
    # the adder's count >= 1, and "at least 3" on the adder can still match: conflict.
    ({"when": "at least 3"}, {"when": "exactly 1", "within": "30d"}, True),
    # The adder's windowed count is never larger than the remover's all-time count, so an
    # adder needing at least 3 and a remover needing exactly 2 cannot both match.
    ({"when": "at least 3", "within": "30d"}, {"when": "exactly 2"}, False),
    ({"when": "at least 3", "reset_on_engagement": True}, {"when": "exactly 2"}, False),
    # Different bounce-type sets and windows that are incomparable: cannot be ruled out.
    (
        {"bounce": ["hard_bounce", "general_bounce"], "when": "at least 3", "within": "30d"},
        {"when": "exactly 2"},
        True,
    ),
]


@pytest.mark.parametrize(("adder", "remover", "conflict"), CONFLICTS)
def test_tag_conflicts_are_caught_where_decidable(
    adder: Mapping[str, object], remover: Mapping[str, object], conflict: bool
) -> None:
    text = rules_toml({**ADDS_X, **adder}, {**REMOVES_X, **remover})
    if not conflict:
        parse_policy(text, "p.toml")
        return
    with pytest.raises(PolicyError, match=r"rule 2 \(.*\): remove_tags: 'X' is added by rule 1"):
        parse_policy(text, "p.toml")


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


def test_action_order() -> None:
    assert Action.BLANK_EMAIL.severity > Action.OPT_OUT.severity > Action.NONE.severity


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
        "Old address: jane@example.com",
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


# --- loading, checking, showing ----------------------------------------------------------------


def test_missing_file_loads_the_default_but_fails_check(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    assert load_policy(missing).source == DEFAULT_SOURCE
    (problem,) = check_policy_file(missing)
    assert str(missing) in problem
    assert "cannot read" in problem


def test_load_reads_the_file_and_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(rules_toml({"bounce": "hard_bounce", "action": "opt_out"}), encoding="utf-8")
    assert load_policy(path).rules[0].action is Action.OPT_OUT
    path.write_text(rules_toml({"bounce": "x"}, {"bounce": "auto_reply"}), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"rule 1 \(x\).*rule 2 \(auto_reply\)"):
        load_policy(path)


def test_unreadable_files_are_policy_errors(tmp_path: Path) -> None:
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path)
    assert "not UTF-8" in check_policy_file(binary)[0]


def test_effective_rules_and_summary() -> None:
    policy = policy_of(
        {
            "bounce": ["hard_bounce", "general_bounce"],
            "when": "more than 2",
            "within": "2w",
            "reset_on_engagement": True,
            "action": "opt_out",
            "add_tags": ["A", "B"],
            "note": True,
            "task": "t",
        },
    )
    (row,) = effective_rules(policy)
    assert tuple(row) == RULE_COLUMNS
    assert row == {
        "rule": "1",
        "bounce": "hard_bounce, general_bounce",
        "when": "more than 2",
        "within": "2w",
        "reset on engagement": "yes",
        "action": "opt_out",
        "add tags": "A, B",
        "remove tags": "",
        "note": "yes",
        "tasks": "t",
    }
    summary = policy_summary(policy)
    assert "test.toml: 1 rule(s)" in summary
    assert "opt_out: rule 1 (hard_bounce/general_bounce)" in summary
    assert "blank_email: never" in summary
    assert "auto_reply" in summary
    assert "HARD_BOUNCE -> hard_bounce" in summary


# --- properties ----------------------------------------------------------------------------------

TAGS = st.lists(st.sampled_from(["A", "B", "C", "D"]), max_size=3, unique=True)
SOME_TYPES = [HB, SB, BounceType.GENERAL_BOUNCE, BounceType.AUTO_REPLY]
WHENS = st.sampled_from(
    [
        "always",
        "exactly 1",
        "exactly 2",
        "exactly 3",
        "at least 2",
        "at least 4",
        "more than 1",
        "more than 3",
    ]
).map(parse_when)
ZONES: st.SearchStrategy[tzinfo | None] = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30))]
)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=ZONES
)


@st.composite
def rules(draw: st.DrawFn, index: int) -> Rule:
    """Any rule decide could be handed, including ones the loader would reject as conflicting."""
    return Rule(
        index=index,
        bounce_types=tuple(
            draw(st.lists(st.sampled_from(SOME_TYPES), min_size=1, max_size=3, unique=True))
        ),
        when=draw(WHENS),
        action=draw(st.sampled_from(list(Action))),
        add_tags=tuple(draw(TAGS)),
        remove_tags=tuple(draw(TAGS)),
        note=draw(st.booleans()),
        within=draw(st.none() | st.integers(1, 60).map(lambda d: timedelta(days=d))),
        reset_on_engagement=draw(st.booleans()),
        tasks=tuple(draw(st.lists(st.text(max_size=20), max_size=2))),
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    size = draw(st.integers(0, 6))
    return Policy(tuple(draw(rules(i + 1)) for i in range(size)), PolicySettings(), {})


@st.composite
def situations(draw: st.DrawFn) -> tuple[BounceEvent, ContactView, list[Strike]]:
    ev = BounceEvent(
        "1",
        EMAIL,
        draw(st.sampled_from(SOME_TYPES)),
        draw(TIMES),
        draw(st.none() | st.integers(-5, 50)),
    )
    fields = draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4))
    who = ContactView(
        "1",
        draw(st.none() | st.just(EMAIL)),
        fields,
        draw(st.none() | TIMES),
        draw(st.none() | TIMES),
    )
    history = draw(st.lists(st.builds(Strike, st.sampled_from(SOME_TYPES), TIMES), max_size=12))
    return ev, who, history


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
    if plan.note is not None and plan.action is not Action.NONE:
        assert f"Old address: {EMAIL}" in plan.note


@st.composite
def rule_tables(draw: st.DrawFn) -> dict[str, object]:
    """Rule tables as a user might write them, valid or not."""
    table: dict[str, object] = {
        "bounce": draw(
            st.sampled_from(["hard_bounce", "Hard Bounce", "mailbox full", "nope"])
            | st.lists(st.sampled_from([t.value for t in SOME_TYPES]), max_size=3)
        ),
    }
    optional = {
        "when": st.sampled_from(
            ["always", "exactly 1", "at least 2", "more than 2", "exactly 0", "x"]
        ),
        "action": st.sampled_from(["none", "opt_out", "blank_email", "delete"]),
        "add_tags": TAGS,
        "remove_tags": TAGS,
        "note": st.booleans(),
        "within": st.sampled_from(["30d", "2w", "12h", "0d", "soon"]),
        "reset_on_engagement": st.booleans(),
        "task": st.sampled_from(["Call {given_name}", "{", "{{x}}"]),
    }
    wrong = st.integers() | st.lists(st.integers(), max_size=2)
    for key, strategy in optional.items():
        if draw(st.booleans()):
            table[key] = draw(strategy | wrong)
    return table


@settings(max_examples=200)
@given(st.lists(rule_tables(), max_size=5), situations())
def test_loaded_policies_either_fail_cleanly_or_decide(
    tables: list[dict[str, object]], situation: tuple[BounceEvent, ContactView, list[Strike]]
) -> None:
    message = ""
    try:
        policy: Policy | None = parse_policy(rules_toml(*tables), "gen.toml")
    except PolicyError as exc:
        policy, message = None, str(exc)
    if policy is None:
        assert "gen.toml: rule " in message
        return
    plan = decide(policy, *situation)
    assert not set(plan.add_tags) & set(plan.remove_tags)


@given(st.text(max_size=300))
def test_arbitrary_text_is_a_policy_or_a_policy_error(text: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_policy(text, "any.toml")
