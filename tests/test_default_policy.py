"""The built-in default policy: written by `policy init`, valid, and as cautious as it claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.bounces import BounceCategory, BounceType
from connector.errors import PolicyError
from connector.policy import (
    DEFAULT_POLICY_TEXT,
    Action,
    BounceEvent,
    ContactView,
    Plan,
    Strike,
    check_policy_file,
    decide,
    default_policy,
    load_policy,
    write_default_policy,
)

T0 = datetime(2024, 6, 1, tzinfo=UTC)
EMAIL = "jane@example.com"
JANE = ContactView("7", EMAIL, {"given_name": "Jane", "family_name": "Doe"}, None, None)
BLOCKS = [b for b in BounceType if b.category is BounceCategory.BLOCK]
SOFT = [
    BounceType.SOFT_BOUNCE_GENERAL,
    BounceType.SOFT_BOUNCE_MAILBOX_FULL,
    BounceType.SOFT_BOUNCE_DNS_FAILURE,
    BounceType.GENERAL_BOUNCE,
    BounceType.TRANSIENT_BOUNCE,
]
IDLE = [
    BounceType.AUTO_REPLY,
    BounceType.SUBSCRIBE_REQUEST,
    BounceType.CHALLENGE_RESPONSE,
    BounceType.NO_EMAIL_ADDRESS,
    BounceType.UNDETERMINED,
]


def bounce(
    kind: BounceType, *days_ago: float, who: ContactView = JANE, keap: int | None = None
) -> Plan:
    """Decide a ``kind`` bounce now, after earlier ones of the same kind ``days_ago``."""
    history = [Strike(kind, T0 - timedelta(days=d)) for d in days_ago]
    return decide(default_policy(), BounceEvent("7", EMAIL, kind, T0, keap), who, history)


def test_init_writes_the_packaged_file_and_it_checks_clean(tmp_path: Path) -> None:
    path = write_default_policy(tmp_path / "conf" / "policy.toml")
    packaged = resources.files("connector").joinpath("default_policy.toml")
    assert path.read_text(encoding="utf-8") == DEFAULT_POLICY_TEXT == packaged.read_text("utf-8")
    assert check_policy_file(path) == []
    assert load_policy(path).rules == default_policy().rules


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"already exists.*--force"):
        write_default_policy(path)
    assert path.read_text(encoding="utf-8") == "# mine\n"
    write_default_policy(path, force=True)
    assert path.read_text(encoding="utf-8") == DEFAULT_POLICY_TEXT


def test_the_file_explains_its_choices() -> None:
    text = " ".join(DEFAULT_POLICY_TEXT.lower().replace("#", " ").replace('"', "").split())
    for claim in [
        "a general bounce is an out-of-band bounce that usually reflects a soft",
        "sender reputation",
        "nothing is ever blanked",
        "treated like a spam complaint",
        "auto reply",
    ]:
        assert claim in text, claim


def test_settings_and_status_map() -> None:
    policy = default_policy()
    assert policy.settings.dedupe_window == timedelta(minutes=10)
    assert policy.settings.note_title == "Bounce remediation"
    assert dict(policy.status_map) == {
        "HARD_BOUNCE": BounceType.HARD_BOUNCE,
        "BOUNCE": BounceType.GENERAL_BOUNCE,
    }


HARD_STRIKES = [
    # (earlier hard bounces, action, tags added, tags removed)
    ((), Action.NONE, ("First Hard Bounce",), ()),
    ((5,), Action.NONE, ("Second Hard Bounce",), ("First Hard Bounce",)),
    ((9, 5), Action.OPT_OUT, ("Third Strike",), ("Second Hard Bounce",)),
    ((300, 9, 5), Action.OPT_OUT, ("Third Strike",), ("Second Hard Bounce",)),
]


@pytest.mark.parametrize(("earlier", "action", "added", "removed"), HARD_STRIKES)
def test_hard_bounces_three_strikes(
    earlier: tuple[float, ...],
    action: Action,
    added: tuple[str, ...],
    removed: tuple[str, ...],
) -> None:
    plan = bounce(BounceType.HARD_BOUNCE, *earlier)
    assert (plan.action, plan.add_tags, plan.remove_tags) == (action, added, removed)
    assert plan.note is not None
    assert f"count {len(earlier) + 1}" in plan.note


def test_the_third_strike_keeps_the_address_and_asks_for_a_new_one() -> None:
    plan = bounce(BounceType.HARD_BOUNCE, 9, 5)
    assert plan.note is not None
    assert EMAIL in plan.note
    assert plan.tasks == ("Find a new email address for Jane Doe",)
    assert "Hard Bounce" in plan.reason


def test_an_open_after_the_bounces_starts_the_count_again() -> None:
    opened = ContactView("7", EMAIL, {}, T0 - timedelta(days=2), None)
    plan = bounce(BounceType.HARD_BOUNCE, 9, 5, who=opened)
    assert (plan.action, plan.add_tags) == (Action.NONE, ("First Hard Bounce",))


def test_unsubscribe_request_opts_out_at_once() -> None:
    plan = bounce(BounceType.UNSUBSCRIBE_REQUEST)
    assert plan.action is Action.OPT_OUT
    assert plan.note is not None
    assert "Unsubscribe Request" in plan.reason


@pytest.mark.parametrize("kind", [*BLOCKS, BounceType.SOFT_BOUNCE_MESSAGE_TOO_LARGE])
def test_sender_side_failures_tag_for_review_and_never_punish(kind: BounceType) -> None:
    for earlier in [(), tuple(range(1, 40))]:
        plan = bounce(kind, *earlier)
        assert plan.action is Action.NONE
        assert plan.add_tags == ("Mail Block - Sender Review",)
        assert plan.note is not None


@pytest.mark.parametrize("kind", IDLE)
def test_administrative_and_unknown_bounces_do_nothing(kind: BounceType) -> None:
    assert bounce(kind, *range(1, 20)).does_nothing


@pytest.mark.parametrize("kind", SOFT)
def test_soft_bounces_opt_out_only_after_repeats_inside_30_days(kind: BounceType) -> None:
    assert bounce(kind).does_nothing
    assert bounce(kind, 1, 2, 3).does_nothing
    assert bounce(kind, 1, 2, 3, 40, 50).does_nothing, "outside the window"
    assert bounce(kind, keap=20).does_nothing, "Keap's all-time count says nothing about 30 days"
    plan = bounce(kind, 1, 2, 3, 29)
    assert plan.action is Action.OPT_OUT
    assert plan.add_tags == ("Repeated Soft Bounces",)


def test_soft_bounces_with_an_open_in_between_are_forgiven() -> None:
    opened = ContactView("7", EMAIL, {}, T0 - timedelta(days=2, hours=12), None)
    assert bounce(BounceType.SOFT_BOUNCE_MAILBOX_FULL, 1, 2, 3, 29, who=opened).does_nothing


def test_a_general_bounce_is_not_a_hard_strike() -> None:
    history = [Strike(BounceType.HARD_BOUNCE, T0 - timedelta(days=d)) for d in (3, 2)]
    ev = BounceEvent("7", EMAIL, BounceType.GENERAL_BOUNCE, T0)
    assert decide(default_policy(), ev, JANE, history).does_nothing


@given(
    st.sampled_from(list(BounceType)),
    st.lists(
        st.builds(
            Strike,
            st.sampled_from(list(BounceType)),
            st.datetimes(datetime(2023, 1, 1), datetime(2024, 6, 1), timezones=st.just(UTC)),
        ),
        max_size=30,
    ),
    st.none() | st.integers(0, 100),
)
def test_the_default_never_blanks_and_always_notes_what_it_does(
    kind: BounceType, history: list[Strike], keap: int | None
) -> None:
    plan = decide(default_policy(), BounceEvent("7", EMAIL, kind, T0, keap), JANE, history)
    assert plan.action is not Action.BLANK_EMAIL
    assert plan.does_nothing or plan.note is not None
    if plan.action is Action.OPT_OUT:
        assert kind.category in (BounceCategory.HARD, BounceCategory.SOFT) or (
            kind is BounceType.UNSUBSCRIBE_REQUEST
        )


def test_default_opens_incidents_on_mail_blocks_and_leaves_expire_commented() -> None:
    policy = default_policy()
    assert policy.incidents is not None
    assert set(policy.incidents.bounce_types) == set(BLOCKS)
    assert (policy.incidents.threshold, policy.incidents.within) == (10, timedelta(hours=1))
    assert all(rule.expire is None and not rule.notify for rule in policy.rules)
    for example in ("# protect_tags =", 'action = "promote"', 'expire = "90d"'):
        assert example in DEFAULT_POLICY_TEXT
