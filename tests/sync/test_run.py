"""``connector sync`` in-process against the sandbox: what it finds, queues, remediates, skips.

Every test that keeps a store runs on SQLite and on PostgreSQL (``database_url``/``database_urls``).
"""

from __future__ import annotations

import io
import json
import socket
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.config import Settings, load_settings
from connector.errors import SyncRefusedError
from connector.policy import default_policy
from connector.sandbox import RunningSandbox, SandboxOptions
from connector.store import NewEvent, Store, open_store
from connector.sync import (
    SYNC_NAME,
    Checkpoint,
    OutputFormat,
    Strategy,
    SyncOptions,
    SyncSummary,
    episode_key,
    keap_time,
    parse_since,
    run_sync,
)
from tests.fixtures_sandbox import SandboxFactory
from tests.fixtures_store import DatabaseUrls

MAPPED = {"HARD_BOUNCE", "BOUNCE"}
ANCHOR_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: seeded update times fall in 2025
QUIET = SyncOptions(progress=False, install_signal_handlers=False)


@dataclass
class Account:
    sandbox: RunningSandbox
    settings: Settings

    async def sync(self, out: io.StringIO | None = None, **changes: Any) -> SyncSummary:
        return await run_sync(self.settings, replace(QUIET, **changes), out=out or io.StringIO())

    def bounced(self) -> dict[tuple[int, str], str]:
        """(contact, address) -> status for every address in a mapped status, any field."""
        state = self.sandbox.state
        found = {}
        for contact in state.contacts.values():
            for _, email in contact.emails:
                address = state.address(email)
                if address is not None and address.status in MAPPED:
                    found[(contact.id, email.lower())] = address.status
        return found

    def tagged(self, name: str) -> set[int]:
        return next(
            (set(t.contacts) for t in self.sandbox.state.tags.values() if t.name == name), set()
        )

    def notes(self) -> Counter[int]:
        return Counter(n.contact_id for n in self.sandbox.state.notes.values())

    def writes(self) -> list[dict[str, Any]]:
        return [e for e in self.sandbox.stats()["log"] if e["method"] != "GET"]

    def statuses(self) -> dict[str, str]:
        return {k: a.status for k, a in self.sandbox.state.addresses.items()}


async def account_for(sandbox: RunningSandbox, url: str) -> Account:
    store = await open_store(url, migrate=True)
    await store.close()
    env = {k.lower(): v for k, v in sandbox.env().items()}
    settings = load_settings(
        **env, connector_database_url=url, keap_requests_per_second=150.0, keap_user_id="1"
    )
    return Account(sandbox, settings)


def seeded(**changes: Any) -> SandboxOptions:
    base = SandboxOptions(
        contacts=2500,
        bounced_fraction=0.04,
        seed=11,
        requests_per_second=1000.0,
        data_anchor_ms=ANCHOR_MS,
    )
    return replace(base, **changes)


@pytest.fixture
async def account(sandbox_factory: SandboxFactory, database_url: str) -> Account:
    return await account_for(sandbox_factory(seeded()), database_url)


async def with_store(account: Account) -> Store:
    return await open_store(account.settings.connector_database_url)


def expected_hard(account: Account) -> tuple[set[int], Counter[int]]:
    hard = [key for key, status in account.bounced().items() if status == "HARD_BOUNCE"]
    return {cid for cid, _ in hard}, Counter(cid for cid, _ in hard)


async def test_remediates_exactly_the_mapped_addresses_on_any_field(account: Account) -> None:
    state = account.sandbox.state
    bounced = account.bounced()
    fields = {
        f for c in state.contacts.values() for f, e in c.emails if (c.id, e.lower()) in bounced
    }
    assert {"EMAIL1", "EMAIL2", "EMAIL3"} <= fields, "the seed must put bounces on every field"
    before = account.statuses()

    summary = await account.sync(strategy=Strategy.CONTACTS)

    contacts, notes = expected_hard(account)
    assert summary.completed
    assert summary.bounced_found == summary.queued == len(bounced)
    assert summary.remediated == len(bounced)
    assert account.tagged("First Hard Bounce") == contacts
    assert account.notes() == notes
    assert account.statuses() == before, "one bounce never opts out under the default policy"
    assert not any("opt" in e["operation"].lower() for e in account.writes())


async def test_a_second_run_does_nothing_new(account: Account) -> None:
    await account.sync()
    writes = len(account.writes())
    notes = account.notes()

    again = await account.sync()

    assert again.completed
    assert again.queued == 0
    assert again.already_counted == len(account.bounced())
    assert len(account.writes()) == writes
    assert account.notes() == notes


async def test_both_strategies_do_the_same(
    sandbox_factory: SandboxFactory, database_urls: DatabaseUrls
) -> None:
    one = await account_for(sandbox_factory(seeded()), database_urls("one"))
    two = await account_for(sandbox_factory(seeded()), database_urls("two"))

    a = await one.sync(strategy=Strategy.CONTACTS)
    b = await two.sync(strategy=Strategy.ADDRESSES)

    assert (a.strategy, b.strategy) == ("contacts", "addresses")
    assert a.queued == b.queued > 0
    assert one.notes() == two.notes()
    assert one.tagged("First Hard Bounce") == two.tagged("First Hard Bounce")
    calls_b = two.sandbox.stats()["calls"]
    assert calls_b.get("getEmailAddressStatus", 0) == 0, "the listing carries the status"


async def test_dry_run_writes_nothing_and_does_not_poison_a_real_run(account: Account) -> None:
    out = io.StringIO()
    plan = await account.sync(out=out, dry_run=True, format=OutputFormat.JSON)

    rows = json.loads(out.getvalue())
    assert plan.planned == len(rows) == len(account.bounced())
    assert {(int(r["contact"]), r["address"].lower()) for r in rows} == set(account.bounced())
    hard = [r for r in rows if r["bounce_type"] == "hard_bounce"]
    assert hard
    assert all(r["tags"] == "+First Hard Bounce" and r["rule"] == "1" for r in hard)
    assert account.writes() == []
    store = await with_store(account)
    try:
        assert await store.list_events() == []
        assert await store.load_checkpoint(SYNC_NAME) is None
    finally:
        await store.close()

    real = await account.sync()
    assert real.queued == len(rows)


async def test_dry_run_csv_has_the_plan_columns(account: Account) -> None:
    out = io.StringIO()
    await account.sync(out=out, dry_run=True, format=OutputFormat.CSV, limit=5)
    lines = out.getvalue().splitlines()
    assert lines[0] == "contact,address,field,status,bounce_type,rule,action,tags"
    assert len(lines) == 6


async def test_limit_stops_and_the_next_run_finishes_the_rest(account: Account) -> None:
    first = await account.sync(limit=10)
    assert first.limit_reached
    assert not first.completed
    assert first.queued == first.remediated == 10

    rest = await account.sync()

    assert rest.resumed
    assert rest.completed
    assert first.queued + rest.queued == len(account.bounced())
    contacts, notes = expected_hard(account)
    assert account.notes() == notes
    assert account.tagged("First Hard Bounce") == contacts


async def test_a_recovered_address_that_bounces_again_counts_again(account: Account) -> None:
    await account.sync()
    (cid, email), _ = next((k, s) for k, s in account.bounced().items() if s == "HARD_BOUNCE")
    state = account.sandbox.state

    state.set_status(email, "SINGLE_OPT_IN")
    healthy = await account.sync()
    assert healthy.episodes_ended >= 1
    state.set_status(email, "HARD_BOUNCE")
    again = await account.sync()

    assert again.queued == 1
    assert cid in account.tagged("Second Hard Bounce")
    assert account.notes()[cid] >= 2


async def test_a_bounce_the_webhook_already_counted_is_not_counted_again(account: Account) -> None:
    (cid, email), _ = next((k, s) for k, s in account.bounced().items() if s == "HARD_BOUNCE")
    store = await with_store(account)
    try:
        event = NewEvent("webhook", "hard_bounce", str(cid), email, None, f"webhook:{cid}", "{}")
        added = await store.add_event(event, default_policy().settings.dedupe_window)
        await store.record_strike(added.event_id, str(cid), email, "hard_bounce", datetime.now(UTC))
    finally:
        await store.close()

    summary = await account.sync()

    assert summary.already_counted == 1
    assert summary.queued == len(account.bounced()) - 1


async def test_since_scans_only_contacts_updated_after_it(account: Account) -> None:
    (cid, email), _ = next((k, s) for k, s in account.bounced().items() if s == "HARD_BOUNCE")
    account.sandbox.state.set_status(email, "HARD_BOUNCE", touch_contacts=True)

    summary = await account.sync(since=parse_since("2026-06-01"))

    assert summary.strategy == "contacts"
    assert 1 <= summary.contacts_scanned < 10
    assert summary.queued >= 1
    assert cid in account.tagged("First Hard Bounce")
    queries = [
        e["query"] for e in account.sandbox.stats()["log"] if e["operation"] == "listContacts"
    ]
    assert any("start_update_time" in q and "2026-06-01T00%3A00%3A00.000Z" in q for q in queries)


async def test_auto_picks_the_address_listing_when_bounces_are_rare(
    sandbox_factory: SandboxFactory, database_urls: DatabaseUrls
) -> None:
    rare = await account_for(
        sandbox_factory(seeded(bounced_fraction=0.0005)), database_urls("rare")
    )
    many = await account_for(sandbox_factory(seeded()), database_urls("many"))

    assert (await rare.sync()).strategy == "addresses"
    assert (await many.sync()).strategy == "contacts"


async def test_a_second_run_is_refused_while_one_holds_the_lock(account: Account) -> None:
    store = await with_store(account)
    try:
        assert await store.acquire_sync(SYNC_NAME, "elsewhere:1:abc", timedelta(minutes=2))
        with pytest.raises(SyncRefusedError, match="another `connector sync` is running"):
            await account.sync()
    finally:
        await store.close()


async def test_the_lock_of_a_dead_local_process_is_taken_over(account: Account) -> None:
    store = await with_store(account)
    try:
        dead_owner = f"{socket.gethostname()}:999999:abc"
        assert await store.acquire_sync(SYNC_NAME, dead_owner, timedelta(minutes=2))
        await store.save_checkpoint(SYNC_NAME, Checkpoint("", None, None, dead_owner).dump())
    finally:
        await store.close()

    summary = await account.sync()

    assert summary.completed


async def test_a_run_killed_after_its_scan_is_finished_without_scanning_again(
    account: Account,
) -> None:
    (cid, email), _ = next((k, s) for k, s in account.bounced().items() if s == "HARD_BOUNCE")
    store = await with_store(account)
    try:
        dead_owner = f"{socket.gethostname()}:999999:abc"
        left = NewEvent("sync", "hard_bounce", str(cid), email, None, f"left:{cid}", "{}")
        await store.add_event(left, None)
        scanned = Checkpoint("contacts", None, None, dead_owner, scanned=True)
        await store.save_checkpoint(SYNC_NAME, scanned.dump())
    finally:
        await store.close()

    summary = await account.sync()

    operations = {e["operation"] for e in account.sandbox.stats()["log"]}
    assert summary.resumed
    assert summary.completed
    assert summary.pages == 0
    assert not operations & {"listContacts", "listEmailAddresses"}
    assert summary.remediated == 1
    assert cid in account.tagged("First Hard Bounce")
    store = await with_store(account)
    try:
        assert await store.load_checkpoint(SYNC_NAME) is None
    finally:
        await store.close()


async def test_the_checkpoint_outlives_the_scan_until_the_work_is_done(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[Checkpoint | None] = []
    store = await with_store(account)
    backend = type(store)
    original = backend.save_checkpoint
    await store.close()

    async def spy(self: Store, name: str, data: str) -> None:
        if name == SYNC_NAME:
            saved.append(Checkpoint.load(data))
        await original(self, name, data)

    monkeypatch.setattr(backend, "save_checkpoint", spy)
    summary = await account.sync()

    assert summary.completed
    assert summary.pages >= 1
    assert saved[-1] is not None
    assert saved[-1].scanned
    assert not any(c is not None and c.scanned for c in saved[:-1])


def test_episode_key_ignores_case_and_separates_status_and_contact() -> None:
    assert episode_key("7", " Ada@X.com ", "hard_bounce") == "sync:7:ada@x.com:HARD_BOUNCE"
    assert episode_key("7", "a@x", "BOUNCE") != episode_key("7", "a@x", "HARD_BOUNCE")
    assert episode_key("7", "a@x", "BOUNCE") != episode_key("8", "a@x", "BOUNCE")


def test_since_and_keap_time_formats() -> None:
    assert keap_time(parse_since("2026-01-31")) == "2026-01-31T00:00:00.000Z"
    assert keap_time(parse_since("2026-01-31T10:00:00+02:00")) == "2026-01-31T08:00:00.000Z"
    with pytest.raises(Exception, match="ISO-8601"):
        parse_since("yesterday")


def test_default_policy_maps_only_bounces() -> None:
    assert set(default_policy().status_map) == MAPPED
