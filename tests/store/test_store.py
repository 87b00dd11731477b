"""The store's behaviour, on both backends.

Tests that take ``store`` or ``database_url`` run once on SQLite and once on PostgreSQL (each in a
fresh file or schema). The sections at the end hold what belongs to one backend only: the SQLite
file's mode, lock file and full disk; PostgreSQL outages, schemas and URL handling.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from connector.errors import ConfigError, StoreUnavailableError
from connector.keap.tokens import OAuthToken
from connector.store import (
    AuditWrite,
    EventStatus,
    NewEvent,
    StepStatus,
    Store,
    StrikeRecord,
    open_store,
)
from connector.store.migrations import MIGRATIONS
from connector.store.postgres import PostgresStore
from tests.fixtures_store import FakeClock, drop_schema, schema_url

T0 = FakeClock().now
LEASE = timedelta(seconds=60)
WINDOW = timedelta(minutes=10)
STALE = timedelta(minutes=2)


@asynccontextmanager
async def many_stores(
    url: str, clock: FakeClock, count: int, *, check: bool = True
) -> AsyncIterator[list[Store]]:
    """Several stores on one database, as several processes or hosts would open it."""
    stores = [await open_store(url, clock=clock, check=check) for _ in range(count)]
    try:
        yield stores
    finally:
        for opened in stores:
            await opened.close()


def new_event(contact: str = "1", key: str | None = None, bounce: str = "hard_bounce") -> NewEvent:
    return NewEvent(
        source="webhook",
        bounce_type=bounce,
        contact_id=contact,
        email=f"c{contact}@example.com",
        keap_count=None,
        dedupe_key=key or f"{contact}:{bounce}",
        raw="{}",
    )


async def test_migrations_apply_once_and_are_recorded(database_url: str, clock: FakeClock) -> None:
    first = await open_store(database_url, clock=clock, migrate=True)
    status = await first.migration_status()
    assert [m.name for m in status] == [m.name for m in MIGRATIONS]
    assert all(m.applied_at is not None for m in status)
    assert await first.migrate() == []
    await first.close()


async def test_concurrent_migrations_apply_each_migration_once(
    database_url: str, clock: FakeClock
) -> None:
    async with many_stores(database_url, clock, 2, check=False) as stores:
        results = await asyncio.gather(*(s.migrate() for s in stores))
    assert sorted(results, key=len) == [[], [m.name for m in MIGRATIONS]]


async def test_unmigrated_store_is_refused_with_the_fix(database_url: str) -> None:
    with pytest.raises(StoreUnavailableError, match="connector db migrate"):
        await open_store(database_url)


async def test_duplicate_inside_window_returns_first_event(store: Store, clock: FakeClock) -> None:
    window = timedelta(minutes=10)
    first = await store.add_event(new_event(), window)
    clock.advance(599)
    again = await store.add_event(new_event(), window)
    assert again.duplicate
    assert again.event_id == first.event_id
    clock.advance(2)
    later = await store.add_event(new_event(), window)
    assert not later.duplicate
    assert later.event_id != first.event_id
    assert (await store.queue_stats()).counts["queued"] == 2


async def test_no_window_means_unique_forever(store: Store, clock: FakeClock) -> None:
    first = await store.add_event(new_event(key="sync:a"), None)
    clock.advance(10**8)
    again = await store.add_event(new_event(key="sync:a"), None)
    assert again.duplicate
    assert again.event_id == first.event_id


async def test_forgotten_key_is_stored_again_and_the_old_event_stays(store: Store) -> None:
    first = await store.add_event(new_event(key="sync:a"), None)
    await store.add_event(new_event(key="sync:b"), None)
    keys = [f"sync:none{i}" for i in range(1200)] + ["sync:a", "sync:a"]
    assert await store.forget_dedupe(keys) == ["sync:a"]
    again = await store.add_event(new_event(key="sync:a"), None)
    assert not again.duplicate
    assert await store.get_event(first.event_id) is not None
    assert (await store.add_event(new_event(key="sync:b"), None)).duplicate
    assert await store.forget_dedupe([]) == []


async def test_concurrent_adds_share_commits_and_all_land(store: Store) -> None:
    results = await asyncio.gather(
        *(store.add_event(new_event(str(i)), timedelta(minutes=10)) for i in range(300))
    )
    ids = {r.event_id for r in results}
    assert len(ids) == 300
    assert not any(r.duplicate for r in results)
    assert (await store.queue_stats()).counts["queued"] == 300


async def test_duplicates_inside_one_batch_store_each_key_once(
    store: Store, clock: FakeClock
) -> None:
    """Concurrent adds share a batch; the outcome is as if each had run alone, in order."""
    expired = await store.add_event(new_event("90", key="expired"), WINDOW)
    clock.advance(WINDOW.total_seconds() + 1)
    held = await store.add_event(new_event("91", key="held"), WINDOW)
    keys = [f"k{k}" for k in range(10)] + ["expired", "held"]
    calls = [key for key in keys for _ in range(3)]
    random.Random(7).shuffle(calls)
    results = await asyncio.gather(
        *(store.add_event(new_event(key=key), WINDOW) for key in calls),
        store.add_event(new_event(key="no-window"), timedelta(0)),
        store.add_event(new_event(key="no-window"), timedelta(0)),
    )
    by_key: dict[str, list[tuple[int, bool]]] = {}
    for key, result in zip(calls, results[: len(calls)], strict=True):
        by_key.setdefault(key, []).append((result.event_id, result.duplicate))
    for key, outcomes in by_key.items():
        fresh = [event_id for event_id, duplicate in outcomes if not duplicate]
        winner = held.event_id if key == "held" else fresh[0]
        assert len(fresh) == (0 if key == "held" else 1), f"{key}: {outcomes}"
        assert {event_id for event_id, _ in outcomes} == {winner}, f"{key}: one event for all"
        stored = await store.get_event(winner)
        assert stored is not None
        assert stored.dedupe_key == key
    assert by_key["expired"][0][0] != expired.event_id, "a key past its window is stored again"
    zero = results[-2:]
    assert not any(r.duplicate for r in zero), "a zero window dedupes nothing"
    assert zero[0].event_id != zero[1].event_id
    assert (await store.queue_stats()).counts["queued"] == 2 + 11 + 2


async def test_each_add_in_a_batch_keeps_its_own_window(store: Store, clock: FakeClock) -> None:
    keys = [f"key{k}" for k in range(6)]
    first = [await store.add_event(new_event(key=key), None) for key in keys]
    clock.advance(120)
    windows = [timedelta(seconds=60), WINDOW, None] * 2
    results = await asyncio.gather(
        *(store.add_event(new_event(key=k), w) for k, w in zip(keys, windows, strict=True))
    )
    expected = [False, True, True] * 2  # 120 s is past 60 s, inside 10 min, and None is forever
    assert [r.duplicate for r in results] == expected
    assert [r.event_id == f.event_id for r, f in zip(results, first, strict=True)] == expected


async def test_a_failing_add_does_not_fail_or_lose_the_rest_of_its_batch(store: Store) -> None:
    """A count too big for the INTEGER column fails on both backends, for that event alone."""
    good = [new_event(str(i)) for i in range(20)]
    bad = NewEvent("webhook", "hard_bounce", "99", "x@example.com", 2**70, "bad", "{}")
    calls = [*good[:10], bad, good[0], *good[10:]]
    results = await asyncio.gather(
        *(store.add_event(event, WINDOW) for event in calls), return_exceptions=True
    )
    failed = results.pop(10)
    assert isinstance(failed, Exception), "the bad event fails for its own caller"
    assert not isinstance(failed, StoreUnavailableError), "the store itself is fine"
    added = [r for r in results if not isinstance(r, BaseException)]
    assert len(added) == len(results) == 21, f"every other caller got its result: {results}"
    assert [r.duplicate for r in added].count(True) == 1
    assert added[10].event_id == added[0].event_id, "the copy names the stored event"
    for result in added:
        assert await store.get_event(result.event_id) is not None
    assert (await store.queue_stats()).counts["queued"] == 20
    retried = await store.add_event(replace(bad, keap_count=3), WINDOW)
    assert not retried.duplicate, "the failed add left no dedupe row behind"


async def test_an_add_returns_only_once_another_connection_sees_it(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    async with many_stores(database_url, clock, 1) as (reader,):

        async def add_then_read(n: int) -> None:
            added = await store.add_event(new_event(str(n % 40), key=f"key{n % 40}"), WINDOW)
            stored = await reader.get_event(added.event_id)
            assert stored is not None, "answered before the commit that holds it"
            assert stored.dedupe_key == f"key{n % 40}"

        await asyncio.gather(*(add_then_read(n) for n in range(80)))


async def test_close_stores_and_answers_every_add_already_made(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    """Adds queued when ``close`` is called are committed and answered before it returns."""
    writer = await open_store(database_url, clock=clock)
    adds = [asyncio.create_task(writer.add_event(new_event(str(i)), WINDOW)) for i in range(30)]
    await asyncio.sleep(0)
    await writer.close()
    results = await asyncio.gather(*adds)
    assert not any(r.duplicate for r in results)
    assert (await store.queue_stats()).counts["queued"] == 30
    with pytest.raises(StoreUnavailableError):
        await writer.add_event(new_event("31"), WINDOW)


async def test_claim_takes_one_event_per_contact(store: Store) -> None:
    for bounce in ("hard_bounce", "general_bounce", "auto_reply"):
        await store.add_event(new_event("7", bounce=bounce), None)
    await store.add_event(new_event("8"), None)
    claimed = await store.claim_events(10, LEASE, "w1")
    assert sorted(e.contact_id or "" for e in claimed) == ["7", "8"]
    assert all(e.status is EventStatus.PROCESSING and e.attempts == 1 for e in claimed)
    assert await store.claim_events(10, LEASE, "w2") == [], "contact 7 is busy, 8 has no more"
    seven = next(e for e in claimed if e.contact_id == "7")
    await store.complete_event(seven.id, "done")
    nxt = await store.claim_events(10, LEASE, "w2")
    assert [e.contact_id for e in nxt] == ["7"]
    assert nxt[0].bounce_type == "general_bounce", "oldest first"


async def test_expired_lease_makes_event_due_again(store: Store, clock: FakeClock) -> None:
    await store.add_event(new_event(), None)
    (first,) = await store.claim_events(1, LEASE, "dead-worker")
    clock.advance(LEASE.total_seconds() + 1)
    (again,) = await store.claim_events(1, LEASE, "w2")
    assert again.id == first.id
    assert again.attempts == 2


async def test_fail_retry_dead_and_requeue(store: Store, clock: FakeClock) -> None:
    await store.add_event(new_event(), None)
    (event,) = await store.claim_events(1, LEASE, "w")
    retry_at = datetime.fromtimestamp(clock.now + 30, UTC)
    await store.fail_event(event.id, "Keap 503", retry_at)
    assert await store.claim_events(1, LEASE, "w") == []
    clock.advance(31)
    (event,) = await store.claim_events(1, LEASE, "w")
    await store.fail_event(event.id, "gave up", None)
    dead = await store.get_event(event.id)
    assert dead is not None
    assert dead.status is EventStatus.DEAD
    assert dead.last_error == "gave up"
    assert await store.requeue(failed=True) == 1
    requeued = await store.get_event(event.id)
    assert requeued is not None
    assert requeued.status is EventStatus.QUEUED
    assert requeued.attempts == 0


async def test_release_does_not_count_the_attempt(store: Store, clock: FakeClock) -> None:
    await store.add_event(new_event(), None)
    (event,) = await store.claim_events(1, LEASE, "w")
    await store.release_event(event.id, "login needed", datetime.fromtimestamp(clock.now, UTC))
    (again,) = await store.claim_events(1, LEASE, "w")
    assert again.attempts == 1
    assert again.last_error == "login needed"


async def test_strikes_are_idempotent_and_ordered(store: Store) -> None:
    t = datetime.fromtimestamp(T0, UTC)
    assert await store.record_strike(1, "7", "A@x.com", "hard_bounce", t) == []
    history = await store.record_strike(2, "7", "a@x.com", "hard_bounce", t)
    assert [s.bounce_type for s in history] == ["hard_bounce"]
    again = await store.record_strike(1, "7", "a@x.com", "hard_bounce", t)
    assert again == [], "re-running event 1 sees the history it saw the first time"
    assert len(await store.strikes_for("7", "a@X.com")) == 2
    assert await store.record_strike(3, "7", "other@x.com", "hard_bounce", t) == []


async def test_text_with_a_nul_is_stored_on_every_backend(store: Store) -> None:
    """SQLite keeps a NUL; PostgreSQL text cannot, so it gets U+FFFD instead of an error."""
    kept = "\x00" if store.dialect == "sqlite" else "\ufffd"
    event = NewEvent("webhook", "hard_bounce", "1", "a\x00b@x.com", None, "k\x00", "raw\x00")
    added = await store.add_event(event, timedelta(minutes=10))
    await store.fail_event(added.event_id, "Keap said \x00", None)
    await store.write_audit(AuditWrite(added.event_id, "1", "note", "note", StepStatus.DONE))

    stored = await store.get_event(added.event_id)
    assert stored is not None
    assert (stored.email, stored.raw, stored.last_error) == (
        f"a{kept}b@x.com",
        f"raw{kept}",
        f"Keap said {kept}",
    )
    again = await store.add_event(event, timedelta(minutes=10))
    assert again.duplicate, "the same key is the same key after the swap"


async def test_postgres_a_broken_writer_answers_its_callers(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def nothing(*_: object) -> dict[str, object]:
        return {}

    monkeypatch.setattr(pg_store, "_insert_events", nothing)
    event = NewEvent("webhook", "hard_bounce", "1", None, None, "k", "{}")
    with pytest.raises(KeyError):
        await asyncio.wait_for(pg_store.add_event(event, None), timeout=10)
    monkeypatch.undo()
    added = await asyncio.wait_for(pg_store.add_event(event, None), timeout=10)
    assert not added.duplicate, "the writer lives on after the failure"


async def test_an_events_struck_address_is_the_first_one_recorded(store: Store) -> None:
    t = datetime.fromtimestamp(T0, UTC)
    assert await store.struck_address(1) is None
    await store.record_strike(1, "7", "First@x.com", "hard_bounce", t)
    await store.record_strike(1, "7", "second@x.com", "hard_bounce", t)
    assert await store.struck_address(1) == "first@x.com"
    assert await store.struck_address(2) is None


async def test_audit_upserts_by_event_and_step(store: Store) -> None:
    base = AuditWrite(1, "7", "note", "note", StepStatus.PENDING, detail="sending")
    pending = await store.write_audit(base)
    done = await store.write_audit(
        AuditWrite(1, "7", "note", "note", StepStatus.DONE, after_value="note 99")
    )
    assert done.id == pending.id
    assert done.status is StepStatus.DONE
    assert done.detail == "sending", "an update without detail keeps the old one"
    assert [a.step for a in await store.audit_for_event(1)] == ["note"]
    assert [a.id for a in await store.list_audit(contact_id="7")] == [done.id]
    await store.mark_undone(done.id)
    undone = await store.get_audit(done.id)
    assert undone is not None
    assert undone.undone_at is not None


async def test_audit_reason_goes_with_the_status(store: Store) -> None:
    """A skip or failure says why; a later write replaces the reason with its own (or none)."""
    skipped = await store.write_audit(
        AuditWrite(1, "7", "opt_out", "opt_out", StepStatus.SKIPPED, reason="already_hard_bounce")
    )
    assert skipped.reason == "already_hard_bounce"
    failed = await store.write_audit(
        AuditWrite(2, "7", "task", "task", StepStatus.FAILED, detail="boom", reason="keap_error")
    )
    assert (failed.status, failed.reason) == (StepStatus.FAILED, "keap_error")
    done = await store.write_audit(AuditWrite(2, "7", "task", "task", StepStatus.DONE))
    assert (done.status, done.reason, done.detail) == (StepStatus.DONE, None, "boom")
    read = await store.get_audit(skipped.id)
    assert read is not None
    assert read.reason == "already_hard_bounce"
    assert [a.reason for a in await store.list_audit(contact_id="7")] == [
        None,
        "already_hard_bounce",
    ]
    assert [a.reason for a in await store.audit_for_event(1)] == ["already_hard_bounce"]
    plain = await store.write_audit(AuditWrite(3, "8", "note", "note", StepStatus.DONE))
    assert plain.reason is None


def token(suffix: str) -> OAuthToken:
    return OAuthToken(
        access_token=SecretStr(f"access-{suffix}"),
        refresh_token=SecretStr(f"refresh-{suffix}"),
        expires_at=datetime.fromtimestamp(T0 + 3600, UTC),
        scope="full",
    )


async def test_token_round_trip_and_another_process_sees_it(
    store: Store, database_url: str
) -> None:
    assert await store.load_token() is None
    await store.save_token(token("one"))
    await store.save_token(token("two"))
    loaded = await store.load_token()
    assert loaded is not None
    assert loaded.refresh_token.get_secret_value() == "refresh-two"
    code = textwrap.dedent(
        f"""
        import asyncio
        from connector.store import open_store
        async def main():
            s = await open_store({database_url!r})
            t = await s.load_token()
            print(t.refresh_token.get_secret_value())
            await s.close()
        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "refresh-two"
    await store.clear_token()
    assert await store.load_token() is None


async def test_login_state_is_taken_once(store: Store) -> None:
    await store.save_login_state("abc")
    assert await store.take_login_state() == "abc"
    assert await store.take_login_state() is None


async def test_checkpoints_and_sync_ownership(store: Store, clock: FakeClock) -> None:
    assert await store.load_checkpoint("contacts") is None
    assert await store.acquire_sync("contacts", "run-1", timedelta(minutes=2))
    assert not await store.acquire_sync("contacts", "run-2", timedelta(minutes=2))
    await store.save_checkpoint("contacts", '{"page_token": "p2"}')
    assert await store.load_checkpoint("contacts") == '{"page_token": "p2"}'
    clock.advance(121)
    assert await store.acquire_sync("contacts", "run-2", timedelta(minutes=2)), "stale owner"
    await store.release_sync("contacts", "run-2")
    assert await store.acquire_sync("contacts", "run-3", timedelta(minutes=2))
    await store.clear_checkpoint("contacts")
    assert await store.load_checkpoint("contacts") is None


async def test_listing_filters_newest_first(store: Store, clock: FakeClock) -> None:
    a = await store.add_event(new_event("1"), None)
    clock.advance(100)
    b = await store.add_event(new_event("2"), None)
    (claimed,) = await store.claim_events(1, LEASE, "w")
    assert claimed.id == a.event_id
    assert claimed.received_at == datetime.fromtimestamp(T0, UTC)
    assert [e.id for e in await store.list_events()] == [b.event_id, a.event_id]
    assert [e.id for e in await store.list_events(EventStatus.QUEUED)] == [b.event_id]
    since = datetime.fromtimestamp(T0 + 50, UTC)
    assert [e.id for e in await store.list_events(since=since)] == [b.event_id]
    assert [e.id for e in await store.list_events(limit=1)] == [b.event_id]
    stats = await store.queue_stats()
    assert stats.counts == {"queued": 1, "processing": 1, "done": 0, "failed": 0, "dead": 0}
    assert stats.oldest_queued_age_seconds == pytest.approx(100)
    assert await store.get_event(10**9) is None


async def test_audit_listing_filters_newest_first(store: Store, clock: FakeClock) -> None:
    first = await store.write_audit(AuditWrite(1, "1", "tag", "tag", StepStatus.DONE, dry_run=True))
    clock.advance(10)
    second = await store.write_audit(AuditWrite(2, "2", "tag", "tag", StepStatus.SKIPPED))
    assert first.dry_run
    assert not second.dry_run
    assert [x.id for x in await store.list_audit()] == [second.id, first.id]
    assert [x.id for x in await store.list_audit(contact_id="1")] == [first.id]
    since = datetime.fromtimestamp(T0 + 5, UTC)
    assert [x.id for x in await store.list_audit(since=since)] == [second.id]
    assert [x.id for x in await store.list_audit(limit=1)] == [second.id]
    assert await store.get_audit(10**9) is None


HOLD_REFRESH_LOCK = textwrap.dedent(
    """
    import asyncio, sys
    from connector.store import open_store

    async def main():
        store = await open_store(sys.argv[1])
        async with store.refresh_lock():
            print("locked", flush=True)
            await asyncio.sleep(float(sys.argv[2]))
            open(sys.argv[3], "w").close()
        await store.close()

    asyncio.run(main())
    """
)


def hold_refresh_lock(url: str, seconds: float, marker: Path) -> subprocess.Popen[str]:
    """Another process holding the store's refresh lock; returns once it holds it."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_REFRESH_LOCK, url, str(seconds), str(marker)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    return child


async def test_refresh_lock_excludes_another_process(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "child-done"
    child = hold_refresh_lock(database_url, 0.5, marker)
    try:
        async with store.refresh_lock():
            assert marker.exists(), "the lock was granted only after the other process let go"
    finally:
        child.wait(timeout=30)


async def test_refresh_lock_is_freed_when_its_holder_dies(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    child = hold_refresh_lock(database_url, 600, tmp_path / "never")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    async def take() -> bool:
        async with store.refresh_lock():
            return True

    assert await asyncio.wait_for(take(), timeout=15)


async def test_refresh_lock_serialises_tasks_of_one_process(store: Store) -> None:
    inside = peak = 0

    async def refresh() -> None:
        nonlocal inside, peak
        async with store.refresh_lock():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    await asyncio.gather(*(refresh() for _ in range(4)))
    assert peak == 1


async def test_two_sync_runs_starting_at_once_get_one_owner(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    async with many_stores(database_url, clock, 2) as (one, two):
        for i in range(10):
            got = await asyncio.gather(
                one.acquire_sync(f"sync{i}", "run-a", STALE),
                two.acquire_sync(f"sync{i}", "run-b", STALE),
            )
            assert sorted(got) == [False, True]


async def test_concurrent_claimers_never_share_an_event_or_a_contact(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    contacts, per_contact = 12, 8
    total = contacts * per_contact
    for n in range(per_contact):
        for c in range(contacts):
            await store.add_event(new_event(str(c), key=f"{c}:{n}"), None)
    busy: set[str | None] = set()
    claimed: list[int] = []
    order: dict[str | None, list[int]] = {}
    rng = random.Random(5)

    async def claimer(worker: Store, name: str) -> None:
        while len(claimed) < total:
            batch = await worker.claim_events(3, LEASE, name)
            for event in batch:
                assert event.contact_id not in busy, f"{name}: a second event of a busy contact"
                busy.add(event.contact_id)
                claimed.append(event.id)
                order.setdefault(event.contact_id, []).append(event.id)
            await asyncio.sleep(rng.random() / 500)
            for event in batch:
                busy.discard(event.contact_id)
                await worker.complete_event(event.id, "ok")

    async with many_stores(database_url, clock, 4) as workers:
        claimers = (claimer(w, f"w{i}") for i, w in enumerate(workers))
        await asyncio.wait_for(asyncio.gather(*claimers), timeout=120)
    assert len(claimed) == len(set(claimed)) == total, "every event claimed exactly once"
    assert all(ids == sorted(ids) for ids in order.values()), "each contact's events oldest first"
    assert (await store.queue_stats()).counts["done"] == total


async def test_claimers_with_skewed_clocks_and_retries_keep_one_event_per_contact(
    store: Store, database_url: str
) -> None:
    """Hosts' clocks differ, so one claimer sees a retried event due while another does not and
    takes a later event of the same contact instead: only serialised claims keep them apart."""
    contacts, per_contact = 8, 8
    total = contacts * per_contact
    for n in range(per_contact):
        for c in range(contacts):
            await store.add_event(new_event(str(c), key=f"{c}:{n}"), None)
    retry_at = datetime.fromtimestamp(T0 + 0.75, UTC)
    busy: set[str | None] = set()
    done: list[int] = []
    rng = random.Random(6)

    async def claimer(worker: Store, name: str) -> None:
        while len(done) < total:
            batch = await worker.claim_events(2, LEASE, name)
            for event in batch:
                assert event.contact_id not in busy, f"{name}: a second event of a busy contact"
                busy.add(event.contact_id)
            await asyncio.sleep(rng.random() / 500)
            for event in batch:
                busy.discard(event.contact_id)
                if event.attempts == 1 and rng.random() < 0.4:
                    await worker.fail_event(event.id, "Keap 503", retry_at)
                else:
                    await worker.complete_event(event.id, "ok")
                    done.append(event.id)

    workers = [await open_store(database_url, clock=FakeClock(T0 + i * 0.5)) for i in range(4)]
    try:
        claimers = (claimer(w, f"w{i}") for i, w in enumerate(workers))
        await asyncio.wait_for(asyncio.gather(*claimers), timeout=120)
    finally:
        for worker in workers:
            await worker.close()
    assert sorted(done) == sorted(set(done))
    assert len(done) == total
    assert (await store.queue_stats()).counts["done"] == total


async def test_concurrent_duplicate_adds_store_each_key_once(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    keys, copies = 50, 4
    calls = [k for k in range(keys) for _ in range(copies)]
    random.Random(3).shuffle(calls)
    async with many_stores(database_url, clock, 4) as writers:
        results = await asyncio.gather(
            *(
                writers[n % 4].add_event(new_event(str(k), key=f"key{k}"), WINDOW)
                for n, k in enumerate(calls)
            )
        )
    assert sum(not r.duplicate for r in results) == keys
    by_key: dict[int, set[int]] = {}
    for k, result in zip(calls, results, strict=True):
        by_key.setdefault(k, set()).add(result.event_id)
    for k, ids in by_key.items():
        assert len(ids) == 1, f"key{k}: duplicates must name the event that was stored"
        stored = await store.get_event(ids.pop())
        assert stored is not None
        assert stored.dedupe_key == f"key{k}"
    assert (await store.queue_stats()).counts["queued"] == keys


async def test_concurrent_strikes_count_once_and_agree_on_history(
    store: Store, database_url: str, clock: FakeClock
) -> None:
    events = 20
    calls = [e for e in range(1, events + 1) for _ in range(3)]
    random.Random(4).shuffle(calls)

    def strike(writer: Store, event_id: int) -> Awaitable[list[StrikeRecord]]:
        when = datetime.fromtimestamp(T0 + event_id, UTC)
        return writer.record_strike(event_id, "7", "A@x.com", "hard_bounce", when)

    async with many_stores(database_url, clock, 4) as writers:
        results = await asyncio.gather(*(strike(writers[n % 4], e) for n, e in enumerate(calls)))
    final = await store.strikes_for("7", "a@x.com")
    assert len(final) == events
    seen: dict[int, list[StrikeRecord]] = {}
    for event_id, history in zip(calls, results, strict=True):
        assert seen.setdefault(event_id, history) == history, "one event, one history"
        assert history == final[: len(history)], "a history is exactly what was recorded before"
    assert sorted(len(h) for h in seen.values()) == list(range(events))
    for event_id, history in seen.items():
        assert await strike(store, event_id) == history, "a re-run sees the same history"


# --- SQLite only ----------------------------------------------------------------------------


async def test_sqlite_database_file_is_private(sqlite_store: Store, tmp_path: Path) -> None:
    mode = stat.S_IMODE(os.stat(tmp_path / "store.db").st_mode)
    assert mode == 0o600


async def test_sqlite_refresh_lock_is_a_flock_beside_the_database(
    sqlite_store: Store, tmp_path: Path
) -> None:
    marker = tmp_path / "child-done"
    lock_file = tmp_path / "store.db.refresh.lock"
    code = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        fd = os.open({str(lock_file)!r}, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(0.5)
        open({str(marker)!r}, "w").close()
        fcntl.flock(fd, fcntl.LOCK_UN)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    async with sqlite_store.refresh_lock():
        assert marker.exists(), "the lock was granted only after the other process let go"
    child.wait(timeout=30)


async def test_sqlite_full_disk_fails_the_write_and_keeps_earlier_data(sqlite_store: Store) -> None:
    store = sqlite_store
    first = await store.add_event(new_event("1"), None)
    pages = await store._call(lambda c: c.execute("PRAGMA page_count").fetchone()[0])  # type: ignore[attr-defined]  # SQLiteStore's own
    await store._call(lambda c: c.execute(f"PRAGMA max_page_count={pages}"))  # type: ignore[attr-defined]  # SQLiteStore's own
    big = NewEvent("webhook", "hard_bounce", "2", "x@example.com", None, "k2", "x" * 200_000)
    with pytest.raises(StoreUnavailableError):
        await store.add_event(big, None)
    await store._call(lambda c: c.execute("PRAGMA max_page_count=1073741823"))  # type: ignore[attr-defined]  # SQLiteStore's own
    stored = await store.get_event(first.event_id)
    assert stored is not None
    assert (await store.queue_stats()).counts["queued"] == 1
    retried = await store.add_event(big, None)
    assert not retried.duplicate, "the failed write left no dedupe row behind"


# --- PostgreSQL only ------------------------------------------------------------------------


class Relay:
    """A TCP relay in front of the test server that a test can cut and restore: an outage."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def eventually(check: Callable[[], Awaitable[None]], seconds: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            await check()
            return
        except StoreUnavailableError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_postgres_outage_is_store_unavailable_without_the_password_and_recovers(
    postgres_server: str, postgres_schema: str, clock: FakeClock
) -> None:
    params = conninfo_to_dict(postgres_server)
    relay = Relay(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await relay.start()
    password = str(params.get("password") or "s3cret-pw")
    base = f"postgresql://{params.get('user') or 'postgres'}:{password}@127.0.0.1:{relay.port}"
    url = schema_url(f"{base}/{params.get('dbname')}", postgres_schema)
    store = await PostgresStore.connect(url, clock=clock, timeout=1.0)
    try:
        await store.migrate()
        await store.add_event(new_event("1"), None)
        await relay.cut()
        with pytest.raises(StoreUnavailableError) as info:
            await store.add_event(new_event("2"), None)
        assert password not in str(info.value)
        assert f"127.0.0.1:{relay.port}" in str(info.value)
        await relay.start()
        await eventually(store.ping)
        assert not (await store.add_event(new_event("2"), None)).duplicate
        assert (await store.queue_stats()).counts["queued"] == 2
    finally:
        await store.close()
        await relay.cut()


async def test_postgres_unreachable_server_fails_at_open_without_the_password() -> None:
    with pytest.raises(StoreUnavailableError) as info:
        await open_store("postgresql://connector:s3cret-pw@127.0.0.1:1/test")
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1:1/test" in str(info.value)


async def test_postgres_bad_url_or_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        await open_store("postgresql://connector:s3cret-pw@host/db?bogus=1")
    assert "s3cret-pw" not in str(info.value)
    with pytest.raises(ConfigError, match="schema"):
        PostgresStore("postgresql://127.0.0.1/test", schema="Robert'); DROP TABLE x")


async def test_postgres_unmigrated_store_names_the_fix(postgres_url: str) -> None:
    store = await open_store(postgres_url, check=False)
    try:
        with pytest.raises(StoreUnavailableError, match="connector db migrate"):
            await store.load_token()
    finally:
        await store.close()


async def test_postgres_explicit_schema_holds_every_table(
    postgres_server: str, postgres_schema: str, clock: FakeClock
) -> None:
    store = await PostgresStore.connect(postgres_server, clock=clock, schema=postgres_schema)
    try:
        await store.migrate()
        added = await store.add_event(new_event("1"), None)
    finally:
        await store.close()
    with psycopg.connect(postgres_server) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (postgres_schema,),
        ).fetchall()
    tables = {"events", "dedupe", "strikes", "audit", "oauth_tokens", "kv", "sync_checkpoints"}
    assert tables | {"schema_migrations"} <= {r[0] for r in rows}
    again = await open_store(schema_url(postgres_server, postgres_schema), clock=clock)
    try:
        assert await again.get_event(added.event_id) is not None
    finally:
        await again.close()


async def test_postgres_concurrent_adds_share_one_statement(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: calls that arrive together are stored by one statement, one commit."""
    groups: list[int] = []
    insert = pg_store._insert_events  # type: ignore[attr-defined]  # PostgresStore's own

    async def counted(group: list[object]) -> object:
        groups.append(len(group))
        return await insert(group)

    monkeypatch.setattr(pg_store, "_insert_events", counted)
    results = await asyncio.gather(
        *(pg_store.add_event(new_event(str(i)), WINDOW) for i in range(100))
    )
    assert groups == [100]
    assert len({r.event_id for r in results}) == 100


async def test_postgres_scheme_alias_and_durable_commits(postgres_url: str) -> None:
    store = await open_store(postgres_url.replace("postgresql://", "postgres://", 1), migrate=True)
    try:
        row = await store._one("SHOW synchronous_commit")  # type: ignore[attr-defined]  # SQLStore's own
        assert row == ("on",), "a 202 must follow a commit that is on disk"
    finally:
        await store.close()


async def test_postgres_locks_of_other_schemas_do_not_wait(
    pg_store: Store, postgres_server: str
) -> None:
    other_schema = f"test_{uuid.uuid4().hex[:20]}"
    other = await PostgresStore.connect(postgres_server, schema=other_schema)
    try:
        async with pg_store.refresh_lock(), asyncio.timeout(10), other.refresh_lock():
            pass
    finally:
        await other.close()
        drop_schema(postgres_server, other_schema)
