"""The scans: what each finds, ``--since``, episode keys, and the paging guard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.durations import parse_since
from connector.keap.models import Page
from connector.policy import default_policy
from connector.service import Runtime
from connector.sync import SYNC_NAME, Strategy, SyncOptions, run_sync
from connector.sync.scan import PagingStalledError, episode_key, guarded, keap_time, page_bound
from tests.fixtures_sandbox import SandboxFactory
from tests.fixtures_store import DatabaseUrls
from tests.sync.accounts import MAPPED, Account, account_for, seeded, with_store
from tests.sync.faulty import EndlessPages

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


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


async def test_since_scans_only_contacts_updated_after_it(account: Account) -> None:
    (cid, email), _ = next((k, s) for k, s in account.bounced().items() if s == "HARD_BOUNCE")
    account.sandbox.state.set_status(email, "HARD_BOUNCE", touch_contacts=True)

    summary = await account.sync(since=parse_since("2026-06-01", datetime.now(UTC)))

    assert summary.strategy == "contacts"
    assert 1 <= summary.contacts_scanned < 10
    assert summary.queued >= 1
    assert cid in account.tagged("First Hard Bounce")
    queries = [
        e["query"] for e in account.sandbox.stats()["log"] if e["operation"] == "listContacts"
    ]
    assert any("start_update_time" in q and "2026-06-01T00%3A00%3A00.000Z" in q for q in queries)


async def test_since_as_a_duration_scans_the_recently_updated(account: Account) -> None:
    """``sync --since 7d`` (issue 12): the grammar of ``report --since``, via durations."""
    (cid, email), _ = next((k, s) for k, s in account.bounced().items() if s == "HARD_BOUNCE")
    account.sandbox.state.set_status(email, "HARD_BOUNCE", touch_contacts=True)

    summary = await account.sync(since=parse_since("7d", datetime.now(UTC)))

    assert summary.strategy == "contacts"
    assert 1 <= summary.contacts_scanned < 10
    assert cid in account.tagged("First Hard Bounce")


def test_episode_key_ignores_case_and_separates_status_and_contact() -> None:
    assert episode_key("7", " Ada@X.com ", "hard_bounce") == "sync:7:ada@x.com:HARD_BOUNCE"
    assert episode_key("7", "a@x", "BOUNCE") != episode_key("7", "a@x", "HARD_BOUNCE")
    assert episode_key("7", "a@x", "BOUNCE") != episode_key("8", "a@x", "BOUNCE")


def test_since_and_keap_time_formats() -> None:
    assert keap_time(parse_since("2026-01-31", NOW)) == "2026-01-31T00:00:00.000Z"
    assert keap_time(parse_since("2026-01-31T10:00:00+02:00", NOW)) == "2026-01-31T08:00:00.000Z"
    assert keap_time(parse_since("7d", NOW)) == "2026-11-29T12:00:00.000Z"
    assert keap_time(parse_since("90m", NOW)) == keap_time(NOW - timedelta(minutes=90))
    with pytest.raises(Exception, match="yesterday"):
        parse_since("yesterday", NOW)


def test_default_policy_maps_only_bounces() -> None:
    assert set(default_policy().status_map) == MAPPED


# --- the paging guard -------------------------------------------------------------------------


async def _listing(tokens: list[str | None]) -> AsyncIterator[Page[Any]]:
    previous = None
    for token in tokens:
        yield Page(items=[], page_token=previous, next_page_token=token)
        previous = token


async def _count(pages: AsyncIterator[Page[Any]], seen: list[Page[Any]] | None = None) -> None:
    async for page in pages:
        if seen is not None:
            seen.append(page)


async def test_a_repeated_page_token_is_a_stalled_listing() -> None:
    pages = guarded(_listing(["a", "b", "a", "c"]), what="listing things", max_pages=100)
    with pytest.raises(PagingStalledError, match=r"listing things: .*'a' twice"):
        await _count(pages)


async def test_pages_beyond_the_bound_are_a_stalled_listing() -> None:
    seen: list[Page[Any]] = []
    pages = guarded(_listing([f"t{i}" for i in range(50)]), what="listing things", max_pages=12)
    with pytest.raises(PagingStalledError, match="after 12, far beyond"):
        await _count(pages, seen)
    assert len(seen) == 11


async def test_a_listing_that_ends_within_the_bound_is_read_whole() -> None:
    pages = [p async for p in guarded(_listing(["a", "b", None]), what="x", max_pages=3)]
    assert [p.next_page_token for p in pages] == ["a", "b", None]


def test_page_bound_leaves_room_and_a_margin() -> None:
    assert page_bound(0, 1000) == 10
    assert page_bound(2500, 1000) == 16
    assert page_bound(250, 100) == 16


async def test_an_endless_contact_listing_ends_in_a_clear_error(account: Account) -> None:
    endless: list[EndlessPages] = []

    def prepare(rt: Runtime) -> None:
        fake = EndlessPages(rt.client.iter_contacts, when=lambda kw: not kw.get("order_by"))
        endless.append(fake)
        setattr(rt.client, "iter_contacts", fake)  # noqa: B010 - an instance-level patch

    with pytest.raises(PagingStalledError, match="listing contacts: still more pages"):
        await run_sync(
            account.settings,
            SyncOptions(install_signal_handlers=False, strategy=Strategy.CONTACTS),
            prepare=prepare,
        )

    # The highest contact id bounds the account; the guard allows twice its pages plus 10.
    highest = max(int(c) for c in account.sandbox.state.contacts)
    assert endless[0].calls == page_bound(highest, 1000) - 1
    store = await with_store(account)
    try:
        assert await store.acquire_sync(SYNC_NAME, "next:1:abc", timedelta(minutes=2)), (
            "the failed run released its lock"
        )
    finally:
        await store.close()
