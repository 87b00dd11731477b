from __future__ import annotations

from collections import Counter

import httpx

from connector.sandbox.seed import SeedPlan, seed_state
from connector.sandbox.state import SandboxState
from tests.fixtures_sandbox import SandboxFactory

ANCHOR = 1_767_225_600_000  # 2026-01-01T00:00:00Z
YEAR_MS = 365 * 86_400_000


def seeded(contacts: int = 2000, fraction: float = 0.1, seed: int = 3) -> SandboxState:
    state = SandboxState()
    seed_state(state, SeedPlan(contacts, fraction, seed, ANCHOR))
    return state


def fingerprint(state: SandboxState) -> list[object]:
    contacts = [
        (c.id, c.given_name, c.family_name, c.emails, c.create_ms, c.update_ms)
        for c in state.contacts.values()
    ]
    addresses = [(a.email, a.status, a.create_ms) for a in state.addresses.values()]
    tags = [(t.id, t.name, sorted(t.contacts)) for t in state.tags.values()]
    return [contacts, addresses, tags, [u.email for u in state.users.values()]]


def test_same_seed_gives_the_same_account() -> None:
    assert fingerprint(seeded(seed=3)) == fingerprint(seeded(seed=3))


def test_another_seed_gives_another_account() -> None:
    assert fingerprint(seeded(seed=3)) != fingerprint(seeded(seed=4))


def test_contacts_have_one_to_three_addresses_in_email_slots() -> None:
    state = seeded()
    counts = Counter(len(c.emails) for c in state.contacts.values())
    assert set(counts) == {1, 2, 3}
    for contact in state.contacts.values():
        fields = [f for f, _ in contact.emails]
        assert fields[0] == "EMAIL1"
        assert len(set(fields)) == len(fields)
        assert set(fields) <= {"EMAIL1", "EMAIL2", "EMAIL3"}


def test_bounced_fraction_is_honoured_and_mixes_statuses() -> None:
    state = seeded(fraction=0.1)
    statuses = Counter(a.status for a in state.addresses.values())
    bad = sum(statuses[s] for s in ("HARD_BOUNCE", "BOUNCE", "SPAM", "LIST_UNSUBSCRIBE", "INVALID"))
    assert bad == round(len(state.addresses) * 0.1)
    assert statuses["HARD_BOUNCE"] > statuses["BOUNCE"] > 0
    assert min(statuses["SPAM"], statuses["LIST_UNSUBSCRIBE"], statuses["INVALID"]) > 0


def test_some_addresses_are_shared_between_contacts() -> None:
    state = seeded()
    shared = [e for e, ids in state.email_contacts.items() if len(ids) > 1]
    assert shared
    every_address = {e.lower() for c in state.contacts.values() for _, e in c.emails}
    assert every_address == set(state.addresses)


def test_update_times_spread_over_the_year_before_the_anchor() -> None:
    times = [c.update_ms for c in seeded().contacts.values()]
    assert ANCHOR - YEAR_MS <= min(times) < ANCHOR - YEAR_MS * 0.9
    assert ANCHOR - YEAR_MS * 0.1 < max(times) <= ANCHOR


def test_ids_are_sorted_unique_and_not_contiguous() -> None:
    ids = seeded().contact_ids
    assert ids == sorted(set(ids))
    assert ids[-1] - ids[0] + 1 > len(ids)


def test_at_least_one_admin_user() -> None:
    assert any(u.admin for u in seeded().users.values())


def test_same_seed_serves_the_same_contacts_over_http(sandbox_factory: SandboxFactory) -> None:
    first = sandbox_factory(seed=11, data_anchor_ms=ANCHOR)
    second = sandbox_factory(seed=11, data_anchor_ms=ANCHOR)
    dumps = [
        httpx.get(f"{s.root_url}/_sandbox/state", params={"contacts": "all"}).json()["contacts"]
        for s in (first, second)
    ]
    assert dumps[0] == dumps[1]
    assert len(dumps[0]) == 50
