"""The policy's types (DESIGN.md section 7): severity, count conditions, rules and plans."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.bounces import BounceType
from connector.policy import Action, Plan, Policy, PolicySettings, Rule, When, parse_when
from connector.policy.model import DEFAULT_STATUS_MAP
from tests.policy.builders import HB, SB


def test_action_order() -> None:
    assert Action.BLANK_EMAIL.severity > Action.OPT_OUT.severity > Action.NONE.severity


WHEN_RANGES = st.builds(
    lambda low, span: When("generated", low, None if span is None else low + span),
    st.integers(1, 20),
    st.none() | st.integers(0, 20),
)


@given(WHEN_RANGES, WHEN_RANGES)
def test_when_overlaps_exactly_when_some_count_matches_both(one: When, other: When) -> None:
    both = any(one.matches(count) and other.matches(count) for count in range(1, 50))
    assert one.overlaps(other) is both
    assert other.overlaps(one) is both


def test_when_prints_its_canonical_text() -> None:
    assert str(parse_when("  More   Than 2 ")) == "more than 2"
    assert parse_when("more than 2") == When("more than 2", 3, None)


def test_rule_name_and_what_it_counts() -> None:
    rule = Rule(3, (HB, SB), parse_when("always"), add_tags=("T",))
    assert rule.name == "rule 3 (hard_bounce/soft_bounce_general)"
    assert rule.counts_all_time
    assert not dataclasses.replace(rule, within=timedelta(days=1)).counts_all_time
    assert not dataclasses.replace(rule, reset_on_engagement=True).counts_all_time


def test_rules_are_immutable() -> None:
    rule = Rule(1, (HB,), parse_when("always"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.index = 2  # type: ignore[misc]  # assigning a frozen field is what is tested


def test_status_lookup_is_case_and_space_insensitive() -> None:
    policy = Policy((), PolicySettings(), MappingProxyType(dict(DEFAULT_STATUS_MAP)))
    assert policy.bounce_type_for_status(" hard_bounce ") is BounceType.HARD_BOUNCE
    assert policy.bounce_type_for_status("Bounce") is BounceType.GENERAL_BOUNCE
    assert policy.bounce_type_for_status("SPAM") is None


@pytest.mark.parametrize(
    ("changes", "nothing"),
    [
        ({}, True),
        ({"action": Action.OPT_OUT}, False),
        ({"add_tags": ("A",)}, False),
        ({"remove_tags": ("A",)}, False),
        ({"tasks": ("t",)}, False),
        ({"note": "n"}, False),
        ({"rule": 1, "reason": "why"}, True),
    ],
)
def test_plan_does_nothing(changes: dict[str, object], nothing: bool) -> None:
    idle = Plan(Action.NONE, None, (), (), None, "Bounce remediation", (), (), "no rule")
    changed = dataclasses.replace(idle, **changes)  # type: ignore[arg-type]  # Plan's own fields
    assert changed.does_nothing is nothing
