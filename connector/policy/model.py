"""The policy's types: the rules a file holds and the plan ``decide`` returns (DESIGN.md 7).

Kept apart from loading (TOML, pydantic) and deciding (the engine) so each has one obvious
place, and so the types can be read without either: plain frozen dataclasses, no behaviour
beyond a few derived properties.

Rule numbers are 1-based positions of ``[[rule]]`` tables in the file ("rule 1" is the first),
because that is what a person editing the file counts; ``Rule.index``, ``Plan.rule`` and
``RuleMatch.rule`` all use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from connector.bounces import BounceType

DEFAULT_SOURCE = "built-in default policy"


class Action(StrEnum):
    """What happens to the bounced address; severity orders them so the strictest rule wins."""

    NONE = "none"
    OPT_OUT = "opt_out"
    PROMOTE = "promote"
    BLANK_EMAIL = "blank_email"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


# DESIGN 7a: blank_email > promote > opt_out > none.
_SEVERITY = {Action.NONE: 0, Action.OPT_OUT: 1, Action.PROMOTE: 2, Action.BLANK_EMAIL: 3}


@dataclass(frozen=True)
class When:
    """A count condition, held as the closed range of counts it accepts (``high`` None: no end).

    A range rather than the parsed words makes overlap checks between rules simple arithmetic.
    """

    text: str
    low: int
    high: int | None

    def matches(self, count: int) -> bool:
        return self.low <= count and (self.high is None or count <= self.high)

    def overlaps(self, other: When) -> bool:
        return at_most(self.low, other.high) and at_most(other.low, self.high)

    def __str__(self) -> str:
        return self.text


def at_most(low: int, high: int | None) -> bool:
    """``low <= high`` where a ``high`` of None is a range without an end."""
    return high is None or low <= high


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]`` table, validated and normalised."""

    index: int
    bounce_types: tuple[BounceType, ...]
    when: When
    action: Action = Action.NONE
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    note: bool = False
    within: timedelta | None = None
    reset_on_engagement: bool = False
    tasks: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # empty: every domain
    exclude_domains: tuple[str, ...] = ()
    notify: bool = False  # send a ``rule_notify`` alert for each match (DESIGN 7a)
    expire: timedelta | None = None  # opt_out / promote: re-opt-in after this (DESIGN 7a)

    @property
    def name(self) -> str:
        return f"rule {self.index} ({'/'.join(self.bounce_types)})"

    def covers(self, email: str) -> bool:
        """Whether the rule's ``domains`` / ``exclude_domains`` admit the address."""
        domain = address_domain(email)
        if any(domain_matches(p, domain) for p in self.exclude_domains):
            return False
        return not self.domains or any(domain_matches(p, domain) for p in self.domains)

    @property
    def counts_all_time(self) -> bool:
        """Only an unrestricted count is comparable with Keap's own all-time count."""
        return self.within is None and not self.reset_on_engagement


@dataclass(frozen=True)
class PolicySettings:
    dedupe_window: timedelta = timedelta(minutes=10)
    note_title: str = "Bounce remediation"
    protect_tags: tuple[str, ...] = ()


def address_domain(email: str) -> str:
    """The domain a rule's ``domains`` compare with: lower case, internationalised names in
    their ASCII (punycode) form, so ``münchen.de`` and ``xn--mnchen-3ya.de`` are one domain."""
    domain = email.rpartition("@")[2].strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def domain_matches(pattern: str, domain: str) -> bool:
    """``*`` is every domain, ``*.edu`` any domain under ``edu`` (not ``edu`` itself), else
    the exact domain; both sides already in :func:`address_domain` form."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


@dataclass(frozen=True)
class Incidents:
    """``[incidents]``: ``threshold`` bounces of ``bounce_types`` at one receiving domain inside
    ``within`` open an incident there; it closes once ``within`` passes below the threshold."""

    bounce_types: tuple[BounceType, ...]
    threshold: int
    within: timedelta

    def covers(self, bounce_type: BounceType) -> bool:
        return bounce_type in self.bounce_types


DEFAULT_STATUS_MAP: Mapping[str, BounceType] = {
    "HARD_BOUNCE": BounceType.HARD_BOUNCE,
    "BOUNCE": BounceType.GENERAL_BOUNCE,
}


@dataclass(frozen=True)
class Policy:
    """A loaded policy; ``source`` names the file (or the built-in default) for messages."""

    rules: tuple[Rule, ...]
    settings: PolicySettings
    status_map: Mapping[str, BounceType]
    source: str = DEFAULT_SOURCE
    incidents: Incidents | None = None  # no ``[incidents]`` table: no incident is ever opened

    def bounce_type_for_status(self, status: str) -> BounceType | None:
        """The bounce type ``sync`` records for a Keap email status; None for unmapped or unknown
        statuses, since Keap may add enum values at any time (keap-api.md section 3)."""
        return self.status_map.get(status.strip().upper())


@dataclass(frozen=True)
class BounceEvent:
    """The bounce being decided; ``email`` is the address that bounced, already resolved."""

    contact_id: str
    email: str
    bounce_type: BounceType
    occurred_at: datetime
    keap_count: int | None = None


@dataclass(frozen=True)
class ContactView:
    """What ``decide`` may know about the contact; open/click times are of the bounced address."""

    contact_id: str
    email_field: str | None
    fields: Mapping[str, str]
    last_open_time: datetime | None
    last_click_time: datetime | None


@dataclass(frozen=True)
class Strike:
    """A bounce counted earlier for the same contact and address (any type)."""

    bounce_type: BounceType
    occurred_at: datetime


@dataclass(frozen=True)
class RuleMatch:
    """A rule that matched the event, with the count it matched on."""

    rule: int
    count: int


@dataclass(frozen=True)
class Plan:
    """What to do for one event; the executor carries it out, the audit records it."""

    action: Action
    rule: int | None
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    note: str | None
    note_title: str
    tasks: tuple[str, ...]
    matched: tuple[RuleMatch, ...]
    reason: str

    @property
    def does_nothing(self) -> bool:
        return (
            self.action is Action.NONE
            and not (self.add_tags or self.remove_tags or self.tasks)
            and self.note is None
        )
