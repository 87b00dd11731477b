"""Builders shared by the policy tests: TOML snippets, events, contacts and strategies."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo

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
    Strike,
    decide,
    parse_policy,
    parse_when,
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


# --- strategies --------------------------------------------------------------------------------

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
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2030, 1, 1),
    timezones=ZONES,  # type: ignore[arg-type]  # the stub types it from its default
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
