"""The two scans of ``connector sync`` and the paging guard they share.

- ``contacts`` (:class:`ContactScan`): page through every contact, 1,000 a call, with each
  address's status. The cost is fixed by the size of the account, whatever the number of bounces.
- ``addresses`` (:class:`AddressScan`): list only the addresses in a mapped status, then look up
  the contacts holding each one. The cost grows with the number of bounces.

Every listing goes through :func:`guarded`: it checks the stop flag before each call, and ends
with :class:`PagingStalledError` when Keap's paging makes no progress (a page token seen before,
or far more pages than the account can hold), so a faulty ``next_page_token`` can never keep a
run going for ever.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from connector.bounces import BounceType
from connector.errors import PagingStalledError as PagingStalledError  # raised by the client too
from connector.keap.client import KeapClient
from connector.keap.models import Contact, EmailAddress, EmailAddressStatus, Page
from connector.policy import Policy

SCAN_FIELDS = ("email_addresses", "given_name", "family_name", "tag_ids", "update_time")
CONTACT_PAGE_SIZE = 1000
# Small address pages keep the checkpoint close: each address costs a lookup, and a page is
# the unit an interrupted run redoes.
ADDRESS_PAGE_SIZE = 100
STATUS_BATCH = 50  # addresses per emails== filter, to keep the URL well under any limit
RESOLVE_CONCURRENCY = 16
LOOKUP_PAGE_SIZE = 100
# Keap allows up to three addresses per contact; an address listing cannot honestly be longer.
ADDRESSES_PER_CONTACT = 3
# Pages beyond the account's size that a listing may take before it is called stalled: room for
# contacts created during the scan, never an unbounded loop.
PAGE_MARGIN = 10
LOOKUP_MAX_PAGES = 10  # the contacts holding one address
EPISODE_END_PREFIX = "sync-episode-ended:"

T = TypeVar("T")


def page_bound(items: int, page_size: int) -> int:
    """The most pages a listing of at most ``items`` may take: twice its size plus a margin."""
    return 2 * math.ceil(max(0, items) / page_size) + PAGE_MARGIN


async def guarded(
    listing: AsyncIterator[Page[T]],
    *,
    what: str,
    max_pages: int,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[Page[T], None]:
    """``listing``, ended when ``stop`` is set (checked before every call) and failed with
    :class:`PagingStalledError` on a repeated token or past ``max_pages`` pages."""
    seen: set[str] = set()
    pages = 0
    try:
        while stop is None or not stop.is_set():
            try:
                page = await anext(listing)
            except StopAsyncIteration:
                return
            pages += 1
            token = page.next_page_token
            if token is not None and token in seen:
                raise PagingStalledError(f"{what}: Keap handed out page token {token!r} twice")
            if token is not None and pages >= max_pages:
                raise PagingStalledError(
                    f"{what}: still more pages after {pages}, far beyond the account's size"
                )
            if token is not None:
                seen.add(token)
            yield page
    finally:
        close = getattr(listing, "aclose", None)
        if close is not None:
            await close()


# --- findings, episodes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One contact's address in a mapped status, as one scan read it."""

    contact: Contact
    address: EmailAddress
    status: str
    bounce_type: BounceType
    email_status: EmailAddressStatus | None = None


def episode_key(contact_id: str, email: str, status: str) -> str:
    """The dedupe key of one status episode: this contact's address, in this Keap status.

    Keap keeps a bounced address in ``HARD_BOUNCE`` (or ``BOUNCE``) until someone changes it, so
    every scan sees the same bounce again; the status carries no date that would tell one bounce
    from the next. A key without time therefore makes the whole stretch in one status count
    once, forever (``dedupe_window=None``). The contact is in the key because each contact
    holding a shared address is remediated on its own; the status is in it because moving from
    ``BOUNCE`` to ``HARD_BOUNCE`` is a new, worse finding. The episode ends when a contacts scan
    sees the address in any other status (``SyncRun._end_episodes`` forgets the key), so a
    later bounce of a re-activated address counts again.
    """
    return f"sync:{contact_id}:{email.strip().casefold()}:{status.strip().upper()}"


def episode_end_name(contact_id: str, email: str) -> str:
    return f"{EPISODE_END_PREFIX}{contact_id}:{email.strip().casefold()}"


def keap_time(value: datetime) -> str:
    """Keap's filter dates: ISO-8601 with milliseconds and ``Z`` (keap-api.md 2.3)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- scanning ---------------------------------------------------------------------------------


@dataclass
class ScanPage:
    """One page's findings; ``resume`` redoes this page, ``after`` starts at the next one."""

    findings: list[Finding]
    healthy: list[tuple[str, str]]
    contacts: int
    addresses: int
    resume: str | None
    after: str | None
    last: bool


class Scanner(Protocol):
    def pages(self, start: str | None) -> AsyncIterator[ScanPage]: ...


def since_clause(since: datetime | None) -> list[str]:
    return [f"start_update_time=={keap_time(since)}"] if since is not None else []


@dataclass
class ContactScan:
    """Strategy ``contacts``: every contact, with each address's status, 1,000 a call.

    ``max_pages`` bounds the listing (see :func:`page_bound`); ``stop`` ends it between pages.
    """

    client: KeapClient
    policy: Policy
    since: datetime | None
    engagement: bool
    max_pages: int
    stop: asyncio.Event | None = None

    async def pages(self, start: str | None) -> AsyncIterator[ScanPage]:
        """The status call of one page overlaps the read of the next: both are round trips."""
        listing = guarded(
            self.client.iter_contacts(
                page_size=CONTACT_PAGE_SIZE,
                filter=";".join(since_clause(self.since)) or None,
                fields=SCAN_FIELDS,
                start_page_token=start,
            ),
            what="listing contacts",
            max_pages=self.max_pages,
            stop=self.stop,
        )
        ahead: asyncio.Task[ScanPage] | None = None
        try:
            async for page in listing:
                scanned = asyncio.create_task(self._scan(page))
                if ahead is not None:
                    yield await ahead
                ahead = scanned
            if ahead is not None:
                yield await ahead
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
            await listing.aclose()

    async def _scan(self, page: Page[Contact]) -> ScanPage:
        findings: list[Finding] = []
        healthy: list[tuple[str, str]] = []
        addresses = 0
        for contact in page.items:
            for address in contact.email_addresses:
                if not address.email:
                    continue
                addresses += 1
                bounce_type = self.policy.bounce_type_for_status(address.email_opt_status or "")
                if bounce_type is None:
                    healthy.append((contact.id, address.email))
                    continue
                status = (address.email_opt_status or "").upper()
                findings.append(Finding(contact, address, status, bounce_type))
        if self.engagement and findings:
            findings = await self._with_statuses(findings)
        return ScanPage(
            findings,
            healthy,
            len(page.items),
            addresses,
            page.page_token,
            page.next_page_token,
            page.is_last,
        )

    async def _with_statuses(self, findings: list[Finding]) -> list[Finding]:
        """Opens and clicks for every finding of the page in one call, not one per address."""
        emails = sorted({f.address.email.casefold() for f in findings})
        known: dict[str, EmailAddressStatus] = {}
        for start in range(0, len(emails), STATUS_BATCH):
            chunk = emails[start : start + STATUS_BATCH]
            listing = guarded(
                self.client.iter_email_statuses(emails=chunk, page_size=1000),
                what="reading address statuses",
                max_pages=page_bound(len(chunk), 1000),
                stop=self.stop,
            )
            async for page in listing:
                known.update({s.email.casefold(): s for s in page.items})
        return [
            Finding(
                f.contact, f.address, f.status, f.bounce_type, known.get(f.address.email.casefold())
            )
            for f in findings
        ]


@dataclass
class AddressScan:
    """Strategy ``addresses``: only the addresses in a mapped status, each resolved to contacts.

    ``max_pages`` bounds the address listing; ``stop`` ends it between pages.
    """

    client: KeapClient
    policy: Policy
    since: datetime | None
    max_pages: int
    stop: asyncio.Event | None = None

    async def pages(self, start: str | None) -> AsyncIterator[ScanPage]:
        listing = guarded(
            self.client.iter_email_statuses(
                statuses=sorted(self.policy.status_map),
                page_size=ADDRESS_PAGE_SIZE,
                start_page_token=start,
            ),
            what="listing bounced addresses",
            max_pages=self.max_pages,
            stop=self.stop,
        )
        gate = asyncio.Semaphore(RESOLVE_CONCURRENCY)
        try:
            async for page in listing:
                resolved = await asyncio.gather(*(self._resolve(s, gate) for s in page.items))
                findings = [f for group in resolved for f in group]
                yield ScanPage(
                    findings,
                    [],
                    len({f.contact.id for f in findings}),
                    len(page.items),
                    page.page_token,
                    page.next_page_token,
                    page.is_last,
                )
        finally:
            await listing.aclose()

    async def _resolve(self, status: EmailAddressStatus, gate: asyncio.Semaphore) -> list[Finding]:
        bounce_type = self.policy.bounce_type_for_status(status.status)
        if bounce_type is None:
            return []
        clauses = [f"email=={status.email}", *since_clause(self.since)]
        found: list[Finding] = []
        async with gate:
            listing = guarded(
                self.client.iter_contacts(
                    page_size=LOOKUP_PAGE_SIZE, filter=";".join(clauses), fields=SCAN_FIELDS
                ),
                what=f"looking up the contacts of {status.email!r}",
                max_pages=LOOKUP_MAX_PAGES,
                stop=self.stop,
            )
            async for page in listing:
                for contact in page.items:
                    address = contact.address(status.email)
                    if address is not None:
                        found.append(
                            Finding(contact, address, status.status.upper(), bounce_type, status)
                        )
        return found
