"""Choosing the scan: the probes, and that they end on a stop or an endless listing."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from connector.service import Runtime
from connector.sync import SyncRun, run_sync
from connector.sync.scan import PagingStalledError, page_bound
from tests.fixtures_sandbox import SandboxFactory
from tests.fixtures_store import DatabaseUrls
from tests.sync.accounts import QUIET, Account, account_for, seeded
from tests.sync.faulty import EndlessPages


async def test_auto_picks_the_address_listing_when_bounces_are_rare(
    sandbox_factory: SandboxFactory, database_urls: DatabaseUrls
) -> None:
    rare = await account_for(
        sandbox_factory(seeded(bounced_fraction=0.0005)), database_urls("rare")
    )
    many = await account_for(sandbox_factory(seeded()), database_urls("many"))

    assert (await rare.sync()).strategy == "addresses"
    assert (await many.sync()).strategy == "contacts"


async def test_an_endless_address_count_ends_in_a_clear_error(account: Account) -> None:
    """Issue 13, item 5: the probe once paged for 11 minutes; now it is bounded."""
    fake = EndlessPages(when=lambda kw: not kw.get("emails"), lead=False)

    def prepare(rt: Runtime) -> None:
        fake.real = rt.client.iter_email_statuses
        setattr(rt.client, "iter_email_statuses", fake)  # noqa: B010

    with pytest.raises(PagingStalledError, match="counting bounced addresses"):
        await run_sync(account.settings, QUIET, prepare=prepare)

    highest = max(int(c) for c in account.sandbox.state.contacts)
    assert fake.calls == page_bound(3 * highest, 1000)


async def test_a_stop_ends_the_probe_at_once(account: Account) -> None:
    """A stop (what SIGINT/SIGTERM do) during the probe ends the run before the next call."""
    runs: list[SyncRun] = []
    fake = EndlessPages(
        when=lambda kw: not kw.get("emails"),
        lead=False,
        on_page=lambda n: runs[0].request_stop() if n == 3 else None,
    )

    def prepare(rt: Runtime) -> None:
        fake.real = rt.client.iter_email_statuses
        setattr(rt.client, "iter_email_statuses", fake)  # noqa: B010

    summary = await run_sync(account.settings, QUIET, prepare=prepare, started=runs.append)

    assert fake.calls == 3
    assert summary.interrupted
    assert not summary.completed
    assert summary.pages == 0
    assert account.writes() == []


async def test_sigterm_ends_the_probe_at_once(account: Account) -> None:
    """The real signal, through the handlers a run installs: the probe stops within a page."""
    fake = EndlessPages(
        when=lambda kw: not kw.get("emails"),
        lead=False,
        on_page=lambda n: signal.raise_signal(signal.SIGTERM) if n == 3 else None,
    )

    def prepare(rt: Runtime) -> None:
        fake.real = rt.client.iter_email_statuses
        setattr(rt.client, "iter_email_statuses", fake)  # noqa: B010

    options = replace(QUIET, install_signal_handlers=True)
    summary = await run_sync(account.settings, options, prepare=prepare)

    # The handler runs once the loop reads the signal's wake-up byte: a page or two later,
    # never the 46 pages the guard would allow.
    assert fake.calls <= 3 + 3
    assert summary.interrupted
    assert not summary.completed
    assert summary.pages == 0
