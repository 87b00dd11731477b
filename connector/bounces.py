"""Keap's bounce types (DESIGN.md section 3, a contract) and the parser for what people write.

Bounce types arrive from three places that spell them differently: the webhook path or field
(whatever the Keap user typed into the HTTP Post), the policy file, and Keap's own enums
(``HARD_BOUNCE``, ``HardBounce``). All of them go through :func:`parse_bounce_type`, so one
folding rule decides what counts as the same type everywhere.
"""

from __future__ import annotations

from enum import StrEnum

from connector.errors import BounceTypeError

# Longer input is never a bounce type; refusing it up front keeps webhook parsing O(1).
MAX_INPUT_LENGTH = 80

_SEPARATORS = "-_\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00a0\t\r\n\v\f"
_FOLD = str.maketrans(dict.fromkeys(_SEPARATORS, " "))


class BounceCategory(StrEnum):
    """Why the mail came back, which decides whether the contact or the sender is at fault."""

    HARD = "hard"
    SOFT = "soft"
    BLOCK = "block"
    ADMINISTRATIVE = "administrative"
    UNDETERMINED = "undetermined"


class BounceType(StrEnum):
    """The 18 slugs of DESIGN.md section 3; the value is the slug users write and scripts keep."""

    HARD_BOUNCE = "hard_bounce"
    GENERAL_BOUNCE = "general_bounce"
    TRANSIENT_BOUNCE = "transient_bounce"
    NO_EMAIL_ADDRESS = "no_email_address"
    SOFT_BOUNCE_GENERAL = "soft_bounce_general"
    SOFT_BOUNCE_MAILBOX_FULL = "soft_bounce_mailbox_full"
    SOFT_BOUNCE_MESSAGE_TOO_LARGE = "soft_bounce_message_too_large"
    SOFT_BOUNCE_DNS_FAILURE = "soft_bounce_dns_failure"
    AUTO_REPLY = "auto_reply"
    SUBSCRIBE_REQUEST = "subscribe_request"
    UNSUBSCRIBE_REQUEST = "unsubscribe_request"
    CHALLENGE_RESPONSE = "challenge_response"
    MAIL_BLOCK_GENERAL = "mail_block_general"
    MAIL_BLOCK_KNOWN_SPAMMER = "mail_block_known_spammer"
    MAIL_BLOCK_RELAY_DENIED = "mail_block_relay_denied"
    MAIL_BLOCK_SPAM_DETECTED = "mail_block_spam_detected"
    MAIL_BLOCK_ATTACHMENT_DETECTED = "mail_block_attachment_detected"
    UNDETERMINED = "undetermined"

    @property
    def label(self) -> str:
        """Keap's own wording, for notes and opt-out reasons a Keap user will recognise."""
        return _LABELS[self]

    @property
    def category(self) -> BounceCategory:
        return _CATEGORIES[self]


_B = BounceType
_C = BounceCategory

_LABELS: dict[BounceType, str] = {
    _B.HARD_BOUNCE: "Hard Bounce",
    _B.GENERAL_BOUNCE: "General Bounce",
    _B.TRANSIENT_BOUNCE: "Transient Bounce",
    _B.NO_EMAIL_ADDRESS: "Bounce - No Email Address",
    _B.SOFT_BOUNCE_GENERAL: "Soft Bounce - General",
    _B.SOFT_BOUNCE_MAILBOX_FULL: "Soft Bounce - Mailbox Full",
    _B.SOFT_BOUNCE_MESSAGE_TOO_LARGE: "Soft Bounce - Message Too Large",
    _B.SOFT_BOUNCE_DNS_FAILURE: "Soft Bounce - DNS Failure",
    _B.AUTO_REPLY: "Auto Reply",
    _B.SUBSCRIBE_REQUEST: "Subscribe Request",
    _B.UNSUBSCRIBE_REQUEST: "Unsubscribe Request",
    _B.CHALLENGE_RESPONSE: "Challenge-Response",
    _B.MAIL_BLOCK_GENERAL: "Mail Block - General",
    _B.MAIL_BLOCK_KNOWN_SPAMMER: "Mail Block - Known Spammer",
    _B.MAIL_BLOCK_RELAY_DENIED: "Mail Block - Relay Denied",
    _B.MAIL_BLOCK_SPAM_DETECTED: "Mail Block - Spam Detected",
    _B.MAIL_BLOCK_ATTACHMENT_DETECTED: "Mail Block - Attachment Detected",
    _B.UNDETERMINED: "Undetermined",
}

# A general bounce is out-of-band and usually a soft condition (keap-api.md section 3), and a
# missing address can never be delivered to, so it sits with the hard failures.
_CATEGORIES: dict[BounceType, BounceCategory] = {
    _B.HARD_BOUNCE: _C.HARD,
    _B.NO_EMAIL_ADDRESS: _C.HARD,
    _B.GENERAL_BOUNCE: _C.SOFT,
    _B.TRANSIENT_BOUNCE: _C.SOFT,
    _B.SOFT_BOUNCE_GENERAL: _C.SOFT,
    _B.SOFT_BOUNCE_MAILBOX_FULL: _C.SOFT,
    _B.SOFT_BOUNCE_MESSAGE_TOO_LARGE: _C.SOFT,
    _B.SOFT_BOUNCE_DNS_FAILURE: _C.SOFT,
    _B.AUTO_REPLY: _C.ADMINISTRATIVE,
    _B.SUBSCRIBE_REQUEST: _C.ADMINISTRATIVE,
    _B.UNSUBSCRIBE_REQUEST: _C.ADMINISTRATIVE,
    _B.CHALLENGE_RESPONSE: _C.ADMINISTRATIVE,
    _B.MAIL_BLOCK_GENERAL: _C.BLOCK,
    _B.MAIL_BLOCK_KNOWN_SPAMMER: _C.BLOCK,
    _B.MAIL_BLOCK_RELAY_DENIED: _C.BLOCK,
    _B.MAIL_BLOCK_SPAM_DETECTED: _C.BLOCK,
    _B.MAIL_BLOCK_ATTACHMENT_DETECTED: _C.BLOCK,
    _B.UNDETERMINED: _C.UNDETERMINED,
}

# Short forms Keap users write that are not a slug or label: Keap's own status "Bounce", and a
# soft-bounce or mail-block reason without its family prefix (each is unambiguous on its own).
_ALIASES: dict[str, BounceType] = {
    "bounce": _B.GENERAL_BOUNCE,
    "mailbox full": _B.SOFT_BOUNCE_MAILBOX_FULL,
    "message too large": _B.SOFT_BOUNCE_MESSAGE_TOO_LARGE,
    "dns failure": _B.SOFT_BOUNCE_DNS_FAILURE,
    "known spammer": _B.MAIL_BLOCK_KNOWN_SPAMMER,
    "relay denied": _B.MAIL_BLOCK_RELAY_DENIED,
    "spam detected": _B.MAIL_BLOCK_SPAM_DETECTED,
    "attachment detected": _B.MAIL_BLOCK_ATTACHMENT_DETECTED,
}


def _fold(text: str) -> str:
    return " ".join(text.casefold().translate(_FOLD).split())


def _build_lookup() -> dict[str, BounceType]:
    """Every spelling, spaced and run together, so "HardBounce" and "HARD_BOUNCE" both work."""
    spellings: list[tuple[str, BounceType]] = list(_ALIASES.items())
    for bounce_type in BounceType:
        spellings += [(bounce_type.value, bounce_type), (bounce_type.label, bounce_type)]
    lookup: dict[str, BounceType] = {}
    for spelling, bounce_type in spellings:
        folded = _fold(spelling)
        lookup[folded] = bounce_type
        lookup[folded.replace(" ", "")] = bounce_type
    return lookup


_LOOKUP = _build_lookup()

VALID_TYPES_TEXT = ", ".join(bounce_type.value for bounce_type in BounceType)


def parse_bounce_type(text: object) -> BounceType:
    """Map what Keap or a user wrote to a bounce type; safe on untrusted webhook input.

    Accepts ``object`` rather than ``str`` because callers pass raw decoded JSON; anything that
    is not a known spelling raises ``BounceTypeError`` and nothing else.
    """
    if isinstance(text, str) and len(text) <= MAX_INPUT_LENGTH:
        folded = _fold(text)
        found = _LOOKUP.get(folded) or _LOOKUP.get(folded.replace(" ", ""))
        if found is not None:
            return found
    raise BounceTypeError(
        f"unknown bounce type {_quote(text)}",
        hint=f"use one of: {VALID_TYPES_TEXT} (or Keap's label, e.g. 'Soft Bounce - Mailbox Full')",
    )


def _quote(value: object) -> str:
    """Show a bad value without echoing an unbounded or control-character-laden payload."""
    if not isinstance(value, str):
        return f"of type {type(value).__name__}"
    shown = value[:40] + ("..." if len(value) > 40 else "")
    return ascii(shown)
