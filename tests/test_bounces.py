"""Bounce types are a contract (DESIGN.md section 3): slugs, labels and the parser's folding."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.bounces import (
    MAX_INPUT_LENGTH,
    BounceCategory,
    BounceType,
    parse_bounce_type,
)
from connector.errors import BounceTypeError, InputError

H, S, B, A, U = (
    BounceCategory.HARD,
    BounceCategory.SOFT,
    BounceCategory.BLOCK,
    BounceCategory.ADMINISTRATIVE,
    BounceCategory.UNDETERMINED,
)

CONTRACT = [
    ("hard_bounce", "Hard Bounce", H),
    ("general_bounce", "General Bounce", S),
    ("transient_bounce", "Transient Bounce", S),
    ("no_email_address", "Bounce - No Email Address", H),
    ("soft_bounce_general", "Soft Bounce - General", S),
    ("soft_bounce_mailbox_full", "Soft Bounce - Mailbox Full", S),
    ("soft_bounce_message_too_large", "Soft Bounce - Message Too Large", S),
    ("soft_bounce_dns_failure", "Soft Bounce - DNS Failure", S),
    ("auto_reply", "Auto Reply", A),
    ("subscribe_request", "Subscribe Request", A),
    ("unsubscribe_request", "Unsubscribe Request", A),
    ("challenge_response", "Challenge-Response", A),
    ("mail_block_general", "Mail Block - General", B),
    ("mail_block_known_spammer", "Mail Block - Known Spammer", B),
    ("mail_block_relay_denied", "Mail Block - Relay Denied", B),
    ("mail_block_spam_detected", "Mail Block - Spam Detected", B),
    ("mail_block_attachment_detected", "Mail Block - Attachment Detected", B),
    ("undetermined", "Undetermined", U),
]
SEPARATORS = ["-", "–", "—", "_", " ", "  ", " - ", " – ", "\t"]


def test_the_enum_is_exactly_the_contract() -> None:
    assert [(b.value, b.label, b.category) for b in BounceType] == CONTRACT


@pytest.mark.parametrize(("slug", "label", "category"), CONTRACT)
def test_slug_and_label_spellings_parse(slug: str, label: str, category: BounceCategory) -> None:
    expected = BounceType(slug)
    spellings = [
        slug,
        slug.upper(),
        label,
        label.upper(),
        label.lower(),
        label.replace(" ", "_"),
        label.replace(" - ", " – "),
        label.replace(" - ", "—"),
        f"  {label}  ",
        label.replace(" ", "").replace("-", ""),
    ]
    for spelling in spellings:
        assert parse_bounce_type(spelling) is expected, spelling
    assert expected.category is category


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Soft Bounce – Mailbox Full", BounceType.SOFT_BOUNCE_MAILBOX_FULL),
        ("mailbox full", BounceType.SOFT_BOUNCE_MAILBOX_FULL),
        ("Bounce", BounceType.GENERAL_BOUNCE),
        ("BOUNCE", BounceType.GENERAL_BOUNCE),
        ("HARD_BOUNCE", BounceType.HARD_BOUNCE),
        ("HardBounce", BounceType.HARD_BOUNCE),
        ("challenge response", BounceType.CHALLENGE_RESPONSE),
        ("Known Spammer", BounceType.MAIL_BLOCK_KNOWN_SPAMMER),
        ("dns failure", BounceType.SOFT_BOUNCE_DNS_FAILURE),
        ("bounce - no email address", BounceType.NO_EMAIL_ADDRESS),
        (BounceType.AUTO_REPLY, BounceType.AUTO_REPLY),
    ],
)
def test_what_keap_users_write(text: str, expected: BounceType) -> None:
    assert parse_bounce_type(text) is expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "hard", "soft bounce", "general", "hard bounce!", "mail block", "x" * 10_000],
)
def test_unknown_text_lists_the_valid_types(text: str) -> None:
    with pytest.raises(BounceTypeError) as caught:
        parse_bounce_type(text)
    message = str(caught.value)
    assert "unknown bounce type" in message
    assert all(bounce.value in message for bounce in BounceType)
    assert len(message) < 1200, "an untrusted payload must not be echoed in full"


@pytest.mark.parametrize("value", [None, 3, 1.5, b"hard_bounce", ["hard_bounce"], {"a": 1}])
def test_non_text_is_a_bounce_type_error(value: object) -> None:
    with pytest.raises(BounceTypeError, match="of type"):
        parse_bounce_type(value)


def test_bounce_type_error_is_an_input_error() -> None:
    with pytest.raises(InputError):
        parse_bounce_type("nope")


def test_overlong_input_is_refused_even_when_it_folds_to_a_type() -> None:
    padded = "hard bounce" + " " * MAX_INPUT_LENGTH
    with pytest.raises(BounceTypeError):
        parse_bounce_type(padded)


@st.composite
def respelled(draw: st.DrawFn) -> tuple[str, BounceType]:
    """A slug or label with its words re-joined by any separator and each letter's case flipped."""
    bounce = draw(st.sampled_from(list(BounceType)))
    source = draw(st.sampled_from([bounce.value, bounce.label]))
    words = source.replace("-", " ").replace("_", " ").split()
    text = words[0]
    for word in words[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + word
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    text = "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))
    return text, bounce


@given(respelled())
def test_round_trip_under_case_and_separator_changes(case: tuple[str, BounceType]) -> None:
    text, bounce = case
    assert parse_bounce_type(text) is bounce


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(BounceTypeError):
        assert isinstance(parse_bounce_type(text), BounceType)


ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(ANY_VALUE)
def test_arbitrary_values_never_raise_anything_else(value: object) -> None:
    with contextlib.suppress(BounceTypeError):
        parse_bounce_type(value)
