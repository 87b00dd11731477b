"""The run of ``connector sync`` in-process against the sandbox: what it finds, queues,
remediates, skips; the lock, the checkpoint, ``--limit``, the dry run, and stopping.

Every test that keeps a store runs on SQLite and on PostgreSQL (``database_url``/``database_urls``).
"""

from __future__ import annotations

import io
import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connector.cli.sync_view import OutputFormat
from connector.errors import SyncRefusedError
from connector.policy import default_policy
from connector.service import Runtime
from connector.store import NewEvent, Store
from connector.sync import SYNC_NAME, Checkpoint, Strategy, SyncRun, run_sync
from tests.sync.accounts import QUIET, Account, expected_hard, with_store
from tests.sync.faulty import EndlessPages


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


async def test_dry_run_writes_nothing_and_does_not_poison_a_real_run(account: Account) -> None:
    out = io.StringIO()
    plan = await account.sync(out=out, fmt=OutputFormat.JSON, dry_run=True)

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
    summary = await account.sync(out=out, fmt=OutputFormat.CSV, dry_run=True, limit=5)
    lines = out.getvalue().splitlines()
    assert lines[0] == "contact,address,field,status,bounce_type,rule,action,tags"
    assert len(lines) == 6
    assert summary.plan is not None
    assert [line.split(",")[0] for line in lines[1:]] == [r.contact for r in summary.plan]


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
    assert summary.earlier_remediated == 1, "the event the killed run queued"
    assert summary.remediated == 0, "this run queued nothing new"
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


async def test_a_stop_during_the_scan_ends_the_run_and_keeps_the_checkpoint(
    account: Account,
) -> None:
    """SIGINT/SIGTERM while pages are read: the run ends within a page, resumable."""
    runs: list[SyncRun] = []
    fake = EndlessPages(
        when=lambda kw: not kw.get("order_by"),
        on_page=lambda n: runs[0].request_stop() if n == 2 else None,
    )

    def prepare(rt: Runtime) -> None:
        fake.real = rt.client.iter_contacts
        setattr(rt.client, "iter_contacts", fake)  # noqa: B010 - an instance-level patch

    options = replace(QUIET, strategy=Strategy.CONTACTS)
    summary = await run_sync(account.settings, options, prepare=prepare, started=runs.append)

    assert summary.interrupted
    assert not summary.completed
    assert fake.calls <= 2 + 3, "read-ahead may have asked for a page or two more, no more"
    store = await with_store(account)
    try:
        saved = Checkpoint.load(await store.load_checkpoint(SYNC_NAME))
        assert saved is not None
        assert saved.strategy == "contacts"
        assert not saved.scanned
        assert await store.acquire_sync(SYNC_NAME, "next:1:abc", timedelta(minutes=2))
    finally:
        await store.close()
