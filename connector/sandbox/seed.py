"""Deterministic seed data: the same seed and anchor always give the same account.

Everything is drawn from one ``random.Random(seed)`` in a fixed order, so tests can compare two
sandboxes field by field, and a bug found with a seed can be replayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.sandbox.names import EMAIL_DOMAINS, FAMILY_NAMES, GIVEN_NAMES
from connector.sandbox.state import Address, Contact, SandboxState, Tag, TagCategory, User

_DAY_MS = 86_400_000
_BOUNCE_MIX = (
    ("HARD_BOUNCE", 55),
    ("BOUNCE", 30),
    ("SPAM", 5),
    ("LIST_UNSUBSCRIBE", 5),
    ("INVALID", 5),
)
_HEALTHY_MIX = (
    ("SINGLE_OPT_IN", 40),
    ("CONFIRMED", 20),
    ("UNENGAGED_MARKETABLE", 20),
    ("DOUBLE_OPT_IN", 5),
    ("UNENGAGED_NON_MARKETABLE", 10),
    ("NON_MARKETABLE", 5),
)
_SHARED_FRACTION = 0.02
_FIRST_CONTACT_ID = 1001


@dataclass(frozen=True)
class SeedPlan:
    contacts: int
    bounced_fraction: float
    seed: int
    anchor_ms: int  # "now" for the seeded data; update times fall in the year before it


def default_anchor_ms() -> int:
    """Start of today (UTC): stable within a day, so a seed reproduces during a test run."""
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(today.timestamp() * 1000)


def seed_state(state: SandboxState, plan: SeedPlan) -> None:
    rng = random.Random(plan.seed)
    contacts, emails = _contacts(rng, plan)
    addresses = _addresses(rng, plan, emails)
    state.load(contacts, addresses)
    for user in _users(rng):
        state.add_user(user)
    _tags(rng, state, plan)


def _contacts(rng: random.Random, plan: SeedPlan) -> tuple[list[Contact], list[str]]:
    contacts: list[Contact] = []
    emails: list[str] = []  # every distinct address, in first-use order
    contact_id = _FIRST_CONTACT_ID
    for index in range(plan.contacts):
        given, family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
        slots = _slots(rng)
        own = [_email(rng, given, family, index * 3 + n) for n in range(len(slots))]
        shared = rng.choice(emails) if emails and rng.random() < _SHARED_FRACTION else None
        if shared is not None:
            own[-1] = shared  # a household or office address used by two contacts
        emails.extend(email for email in own if email != shared)
        update_ms = plan.anchor_ms - rng.randrange(365 * _DAY_MS)
        create_ms = update_ms - rng.randrange(730 * _DAY_MS)
        pairs = tuple(zip(slots, own, strict=True))
        contacts.append(Contact(contact_id, given, family, pairs, create_ms, update_ms))
        contact_id += rng.choice((1, 1, 1, 2, 5))
    return contacts, emails


def _slots(rng: random.Random) -> tuple[str, ...]:
    roll = rng.random()
    if roll < 0.6:
        return ("EMAIL1",)
    if roll < 0.9:
        return ("EMAIL1", rng.choice(("EMAIL2", "EMAIL2", "EMAIL3")))
    return ("EMAIL1", "EMAIL2", "EMAIL3")


def _email(rng: random.Random, given: str, family: str, serial: int) -> str:
    local = f"{given}.{family}".lower().replace("'", "")
    style = rng.randrange(3)
    if style == 1:
        local = f"{given[0]}{family}".lower().replace("'", "")
    elif style == 2:
        local = f"{family}_{given}".lower().replace("'", "")
    return f"{local}{serial}@{rng.choice(EMAIL_DOMAINS)}"


def _addresses(rng: random.Random, plan: SeedPlan, emails: list[str]) -> list[Address]:
    bounced = set(rng.sample(range(len(emails)), round(len(emails) * plan.bounced_fraction)))
    bounce_names, bounce_weights = zip(*_BOUNCE_MIX, strict=True)
    healthy_names, healthy_weights = zip(*_HEALTHY_MIX, strict=True)
    result = []
    for index, email in enumerate(emails):
        names, weights = (
            (bounce_names, bounce_weights) if index in bounced else (healthy_names, healthy_weights)
        )
        status = rng.choices(names, weights)[0]
        create_ms = plan.anchor_ms - rng.randrange(1000 * _DAY_MS)
        result.append(Address(email, status, create_ms))
    return result


def _users(rng: random.Random) -> list[User]:
    users = []
    for user_id, admin in ((1, True), (2, False)):
        given, family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
        email = f"{given}.{family}@sandbox-app.example.com".lower().replace("'", "")
        users.append(User(user_id, given, family, email, admin))
    return users


def _tags(rng: random.Random, state: SandboxState, plan: SeedPlan) -> None:
    category = TagCategory(
        state.new_id("category"), "Lifecycle", "Where a contact is in the funnel", plan.anchor_ms
    )
    state.categories[category.id] = category
    for name, share in (("Customer", 0.2), ("Lead", 0.3), ("Newsletter", 0.5)):
        members = {cid for cid in state.contact_ids if rng.random() < share}
        tag = Tag(state.new_id("tag"), name, "", category.id, plan.anchor_ms, members)
        state.tags[tag.id] = tag
