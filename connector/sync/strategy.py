"""Choosing the scan of ``connector sync``: two cheap probes, then the cheaper strategy.

Both probes go through :func:`connector.sync.scan.guarded`, so they end on a stop request
before their next call and fail with ``PagingStalledError`` when Keap's paging never ends.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from connector.keap.client import KeapClient
from connector.policy import Policy
from connector.sync.model import Strategy, SyncOptions
from connector.sync.scan import (
    ADDRESS_PAGE_SIZE,
    ADDRESSES_PER_CONTACT,
    CONTACT_PAGE_SIZE,
    guarded,
    page_bound,
)
from connector.worker import needs_engagement


@dataclass(frozen=True)
class Choice:
    strategy: Strategy
    reason: str
    total: int | None = None  # what the progress bar counts to, when known
    contacts: int | None = None  # the contact estimate, when a probe already read it


async def estimate_contacts(client: KeapClient, stop: asyncio.Event | None = None) -> int:
    """The highest contact id: one call, and an upper bound of the count (ids only grow)."""
    listing = guarded(
        client.iter_contacts(page_size=1, fields=("id",), order_by="id desc"),
        what="estimating the contact count",
        max_pages=1 + 1,
        stop=stop,
    )
    try:
        async for page in listing:
            ids = [int(c.id) for c in page.items if c.id.isascii() and c.id.isdigit()]
            return max(ids, default=0)
    finally:
        await listing.aclose()
    return 0


async def count_bounced(
    client: KeapClient,
    policy: Policy,
    cap: int,
    *,
    contacts: int = 0,
    stop: asyncio.Event | None = None,
) -> tuple[int, bool]:
    """Mapped addresses, counted until ``cap`` is passed; True when the count is exact.

    ``contacts`` (the estimate) bounds the pages: an account cannot hold more addresses than
    three per contact, so a listing that goes on longer is stalled, not long.
    """
    count = 0
    listing = guarded(
        client.iter_email_statuses(statuses=sorted(policy.status_map), page_size=CONTACT_PAGE_SIZE),
        what="counting bounced addresses",
        max_pages=page_bound(contacts * ADDRESSES_PER_CONTACT, CONTACT_PAGE_SIZE),
        stop=stop,
    )
    try:
        async for page in listing:
            count += len(page.items)
            if page.is_last:
                return count, True
            if count > cap:
                return count, False
    finally:
        await listing.aclose()
    return count, stop is None or not stop.is_set()


async def choose_strategy(
    client: KeapClient,
    policy: Policy,
    options: SyncOptions,
    resuming: str | None,
    stop: asyncio.Event | None = None,
) -> Choice:
    """Pick the scan that costs fewer Keap calls, the scarce resource (throttle and daily quota).

    ``resuming`` is the strategy of the checkpoint this run resumes, if any.

    The contacts scan costs one call per 1,000 contacts (plus, when a rule resets on engagement,
    about one status call per page with bounces). The address listing costs one call per 100
    bounced addresses plus one contact lookup per address. So the address listing wins while
    the bounced addresses are fewer than the contact pages, i.e. below about one per thousand
    contacts; it is the rare case of a clean account. Two cheap probes decide: the highest
    contact id bounds the contact count, and the mapped addresses are counted only until they
    pass the contacts scan's cost, so the probe never costs more than a few calls.

    ``--since`` always scans contacts: Keap filters contacts by update time, but the address
    listing has no time filter, so it would look up every bounced address again.
    """
    if options.strategy is not Strategy.AUTO:
        return Choice(options.strategy, "chosen with --strategy")
    if resuming is not None:
        return Choice(Strategy(resuming), "resuming the interrupted run")
    if options.since is not None:
        return Choice(Strategy.CONTACTS, "--since filters contacts by update time")
    contacts = await estimate_contacts(client, stop)
    pages = math.ceil(contacts / CONTACT_PAGE_SIZE)
    scan_cost = pages * (2 if engagement(policy) else 1)
    bounced, exact = await count_bounced(client, policy, scan_cost, contacts=contacts, stop=stop)
    address_cost = math.ceil(bounced / ADDRESS_PAGE_SIZE) + bounced
    if exact and address_cost < scan_cost:
        reason = f"{bounced} bounced address(es) cost fewer calls than ~{pages} contact page(s)"
        return Choice(Strategy.ADDRESSES, reason, total=bounced, contacts=contacts)
    reason = f"~{pages} contact page(s) cost fewer calls than looking up each bounced address"
    return Choice(Strategy.CONTACTS, reason, contacts=contacts)


def engagement(policy: Policy) -> bool:
    """Whether a mapped bounce type has a rule that resets on opens and clicks."""
    return any(needs_engagement(policy, t) for t in set(policy.status_map.values()))
