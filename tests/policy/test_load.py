"""Loading a policy file (DESIGN.md section 7): every problem named, conflicts, display."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import timedelta
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
    Policy,
    PolicySettings,
    Strike,
    check_policy_file,
    decide,
    effective_rules,
    load_policy,
    parse_policy,
    parse_when,
    policy_summary,
)
from tests.policy.builders import (
    HB,
    SOME_TYPES,
    TAGS,
    plan_for,
    policy_of,
    rules_toml,
    situations,
)

# --- when --------------------------------------------------------------------------------


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
        "domains": "",
        "expire": "",
        "notify": "",
    }
    summary = policy_summary(policy)
    assert "test.toml: 1 rule(s)" in summary
    assert "opt_out: rule 1 (hard_bounce/general_bounce)" in summary
    assert "blank_email: never" in summary
    assert "auto_reply" in summary
    assert "HARD_BOUNCE -> hard_bounce" in summary


# --- properties --------------------------------------------------------------------------------


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
