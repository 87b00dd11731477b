"""``connector sync``: find the addresses Keap already marks as bounced and remediate them.

Keap's HTTP Post fires once, unsigned, and not at all while our server is down, so the webhook
alone leaves gaps. Sync closes them: it reads Keap's own per-address email status, turns every
address in a status the policy maps (``[sync.status_map]``) into an ordinary store event, and lets
the same worker that handles webhook events plan and carry it out. Nothing here decides policy.

Two ways to find the bounced addresses (see :func:`choose_strategy` for how one is picked):

- ``contacts``: page through every contact, 1,000 a call, with each address's status. The cost
  is fixed by the size of the account, whatever the number of bounces.
- ``addresses``: list only the addresses in a mapped status, then look up the contacts holding
  each one. The cost grows with the number of bounces (one lookup per address).

Pages are read ahead into a bounded queue while the worker remediates earlier findings, both
sharing the client's rate limiter, so Keap's throttle budget is spent continuously. Nothing is
held per contact beyond the page in hand: memory stays flat however large the account.

A run is resumable: after every page the checkpoint (the next page token) is stored, and a run
that stops for any reason (Ctrl-C, SIGTERM, a crash, SIGKILL) starts from there next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from connector.bounces import BounceType
from connector.config import Settings
from connector.errors import InputError, SyncRefusedError
from connector.keap.client import KeapClient
from connector.keap.models import Contact, EmailAddress, EmailAddressStatus, Page
from connector.policy import BounceEvent, ContactView, Plan, Policy, Strike, decide
from connector.service import Runtime, runtime
from connector.store import NewEvent, Store
from connector.worker import DrainResult, Worker, WorkerOptions, needs_engagement, pick_address

log = logging.getLogger("connector.sync")

SYNC_NAME = "sync"
SCAN_FIELDS = ("email_addresses", "given_name", "family_name", "tag_ids", "update_time")
CONTACT_PAGE_SIZE = 1000
# Small address pages keep the checkpoint close: each address costs a lookup, and a page is
# the unit an interrupted run redoes.
ADDRESS_PAGE_SIZE = 100
READ_AHEAD = 2
# The worker claims this many events at once; the TagBatcher coalesces the tag writes of the
# events it processes together, and Keap takes up to 100 contacts per :applyTags call.
WORKER_CONCURRENCY = 100
STATUS_BATCH = 50  # addresses per emails== filter, to keep the URL well under any limit
RESOLVE_CONCURRENCY = 16
STALE_AFTER = timedelta(minutes=2)
HEARTBEAT_SECONDS = 20.0
LOG_EVERY_SECONDS = 10.0
EPISODE_END_PREFIX = "sync-episode-ended:"


class Strategy(StrEnum):
    AUTO = "auto"
    CONTACTS = "contacts"
    ADDRESSES = "addresses"


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True)
class SyncOptions:
    since: datetime | None = None
    dry_run: bool = False
    limit: int | None = None
    restart: bool = False
    strategy: Strategy = Strategy.AUTO
    format: OutputFormat = OutputFormat.TABLE
    progress: bool | None = None  # None: a bar on a terminal, periodic log lines otherwise
    install_signal_handlers: bool = True
    worker_concurrency: int = WORKER_CONCURRENCY


@dataclass
class SyncSummary:
    """What a run did; the CLI prints it and tests assert on it."""

    strategy: str = ""
    reason: str = ""
    dry_run: bool = False
    resumed: bool = False
    completed: bool = False
    interrupted: bool = False
    limit_reached: bool = False
    pages: int = 0
    contacts_scanned: int = 0
    addresses_listed: int = 0
    bounced_found: int = 0
    queued: int = 0
    already_queued: int = 0
    already_counted: int = 0
    planned: int = 0
    episodes_ended: int = 0
    remediated: int = 0
    failed: int = 0
    dead: int = 0
    left_queued: int = 0
    api_calls: int = 0
    elapsed_seconds: float = 0.0

    def lines(self) -> list[str]:
        state = "complete" if self.completed else "stopped early; the next run resumes"
        if self.limit_reached:
            state = "stopped at --limit; the next run resumes"
        found = (
            f"{self.bounced_found} bounced address(es) found: {self.queued} queued, "
            f"{self.already_queued} already queued, {self.already_counted} already counted"
        )
        if self.dry_run:
            found = f"{self.bounced_found} bounced address(es) found, {self.planned} planned"
        lines = [
            f"sync {state} (strategy {self.strategy}: {self.reason})",
            f"scanned {self.contacts_scanned} contact(s), {self.addresses_listed} address(es)",
            found,
        ]
        if not self.dry_run:
            lines.append(
                f"remediated {self.remediated}, {self.failed} to retry, {self.dead} dead, "
                f"{self.left_queued} left queued for `connector worker`"
            )
        lines.append(f"{self.api_calls} Keap call(s) in {self.elapsed_seconds:.1f}s")
        return lines


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
    sees the address in any other status (:meth:`SyncRun._end_episodes` forgets the key), so a
    later bounce of a re-activated address counts again.
    """
    return f"sync:{contact_id}:{email.strip().casefold()}:{status.strip().upper()}"


def episode_end_name(contact_id: str, email: str) -> str:
    return f"{EPISODE_END_PREFIX}{contact_id}:{email.strip().casefold()}"


def keap_time(value: datetime) -> str:
    """Keap's filter dates: ISO-8601 with milliseconds and ``Z`` (keap-api.md 2.3)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_since(text: str) -> datetime:
    """``--since``: any ISO-8601 date or time; without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--since {text!r} is not an ISO-8601 time", hint="e.g. 2026-01-31T00:00:00Z"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Where to resume: the strategy and filter of the run, and the next page's token.

    ``owner`` names the process that holds the run, so a later run on the same host can tell a
    live holder from a dead one without waiting for the heartbeat to go stale. ``scanned`` says
    the scan reached its end but the run stopped before its queued findings were remediated:
    the next run then only finishes that work instead of scanning the whole account again.
    """

    strategy: str
    since: str | None
    page_token: str | None
    owner: str = ""
    scanned: bool = False

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def load(cls, text: str | None) -> Checkpoint | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                str(data["strategy"]),
                data.get("since"),
                data.get("page_token"),
                str(data.get("owner", "")),
                data.get("scanned") is True,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable sync checkpoint")
            return None


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns() % 16**6:06x}"


def _dead_local_owner(owner: str) -> bool:
    """True when ``owner`` was a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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


def _since_clause(since: datetime | None) -> list[str]:
    return [f"start_update_time=={keap_time(since)}"] if since is not None else []


@dataclass
class ContactScan:
    """Strategy ``contacts``: every contact, with each address's status, 1,000 a call."""

    client: KeapClient
    policy: Policy
    since: datetime | None
    engagement: bool

    async def pages(self, start: str | None) -> AsyncIterator[ScanPage]:
        """The status call of one page overlaps the read of the next: both are round trips."""
        listing = self.client.iter_contacts(
            page_size=CONTACT_PAGE_SIZE,
            filter=";".join(_since_clause(self.since)) or None,
            fields=SCAN_FIELDS,
            start_page_token=start,
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
            async for page in self.client.iter_email_statuses(emails=chunk, page_size=1000):
                known.update({s.email.casefold(): s for s in page.items})
        return [
            Finding(
                f.contact, f.address, f.status, f.bounce_type, known.get(f.address.email.casefold())
            )
            for f in findings
        ]


@dataclass
class AddressScan:
    """Strategy ``addresses``: only the addresses in a mapped status, each resolved to contacts."""

    client: KeapClient
    policy: Policy
    since: datetime | None

    async def pages(self, start: str | None) -> AsyncIterator[ScanPage]:
        listing = self.client.iter_email_statuses(
            statuses=sorted(self.policy.status_map),
            page_size=ADDRESS_PAGE_SIZE,
            start_page_token=start,
        )
        gate = asyncio.Semaphore(RESOLVE_CONCURRENCY)
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

    async def _resolve(self, status: EmailAddressStatus, gate: asyncio.Semaphore) -> list[Finding]:
        bounce_type = self.policy.bounce_type_for_status(status.status)
        if bounce_type is None:
            return []
        clauses = [f"email=={status.email}", *_since_clause(self.since)]
        found: list[Finding] = []
        async with gate:
            listing = self.client.iter_contacts(
                page_size=100, filter=";".join(clauses), fields=SCAN_FIELDS
            )
            async for page in listing:
                for contact in page.items:
                    address = contact.address(status.email)
                    if address is not None:
                        found.append(
                            Finding(contact, address, status.status.upper(), bounce_type, status)
                        )
        return found


# --- choosing a strategy ----------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    strategy: Strategy
    reason: str
    total: int | None = None  # what the progress bar counts to, when known


async def estimate_contacts(client: KeapClient) -> int:
    """The highest contact id: one call, and an upper bound of the count (ids only grow)."""
    listing = client.iter_contacts(page_size=1, fields=("id",), order_by="id desc")
    async for page in listing:
        ids = [int(c.id) for c in page.items if c.id.isdigit()]
        return max(ids, default=0)
    return 0


async def count_bounced(client: KeapClient, policy: Policy, cap: int) -> tuple[int, bool]:
    """Mapped addresses, counted until ``cap`` is passed; True when the count is exact."""
    count = 0
    listing = client.iter_email_statuses(
        statuses=sorted(policy.status_map), page_size=CONTACT_PAGE_SIZE
    )
    async for page in listing:
        count += len(page.items)
        if page.is_last:
            return count, True
        if count > cap:
            return count, False
    return count, True


async def choose_strategy(
    client: KeapClient, policy: Policy, options: SyncOptions, resuming: Checkpoint | None
) -> Choice:
    """Pick the scan that costs fewer Keap calls, the scarce resource (throttle and daily quota).

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
        return Choice(Strategy(resuming.strategy), "resuming the interrupted run")
    if options.since is not None:
        return Choice(Strategy.CONTACTS, "--since filters contacts by update time")
    contacts = await estimate_contacts(client)
    pages = math.ceil(contacts / CONTACT_PAGE_SIZE)
    scan_cost = pages * (2 if _engagement(policy) else 1)
    bounced, exact = await count_bounced(client, policy, scan_cost)
    address_cost = math.ceil(bounced / ADDRESS_PAGE_SIZE) + bounced
    if exact and address_cost < scan_cost:
        reason = f"{bounced} bounced address(es) cost fewer calls than ~{pages} contact page(s)"
        return Choice(Strategy.ADDRESSES, reason, total=bounced)
    reason = f"~{pages} contact page(s) cost fewer calls than looking up each bounced address"
    return Choice(Strategy.CONTACTS, reason)


def _engagement(policy: Policy) -> bool:
    return any(needs_engagement(policy, t) for t in set(policy.status_map.values()))


# --- the dry-run plan -------------------------------------------------------------------------

PLAN_COLUMNS = ("contact", "address", "field", "status", "bounce_type", "rule", "action", "tags")


def plan_row(finding: Finding, plan: Plan) -> dict[str, str]:
    tags = [f"+{t}" for t in plan.add_tags] + [f"-{t}" for t in plan.remove_tags]
    return {
        "contact": finding.contact.id,
        "address": finding.address.email,
        "field": finding.address.field,
        "status": finding.status,
        "bounce_type": finding.bounce_type.value,
        "rule": "" if plan.rule is None else str(plan.rule),
        "action": plan.action.value,
        "tags": " ".join(tags),
    }


class PlanWriter:
    """Prints the plan as it grows: CSV and JSON stream, a table is printed at the end."""

    def __init__(self, out: TextIO, fmt: OutputFormat) -> None:
        self._out = out
        self._format = fmt
        self._rows: list[dict[str, str]] = []
        self._count = 0
        self._csv = (
            csv.DictWriter(out, fieldnames=PLAN_COLUMNS) if fmt is OutputFormat.CSV else None
        )

    def start(self) -> None:
        if self._csv is not None:
            self._csv.writeheader()
        elif self._format is OutputFormat.JSON:
            self._out.write("[")

    def add(self, row: dict[str, str]) -> None:
        self._count += 1
        if self._csv is not None:
            self._csv.writerow(row)
        elif self._format is OutputFormat.JSON:
            self._out.write(("\n  " if self._count == 1 else ",\n  ") + json.dumps(row))
        else:
            self._rows.append(row)

    def finish(self) -> None:
        if self._format is OutputFormat.JSON:
            self._out.write("\n]\n" if self._count else "]\n")
        elif self._format is OutputFormat.TABLE:
            table = Table(title=f"sync plan (dry run): {self._count} address(es)")
            for column in PLAN_COLUMNS:
                table.add_column(column.replace("_", " "))
            for row in self._rows:
                table.add_row(*(row[c] for c in PLAN_COLUMNS))
            Console(file=self._out, width=None if self._out.isatty() else 200).print(table)
        self._out.flush()


# --- progress ---------------------------------------------------------------------------------


class Reporter:
    """A rich bar on a terminal, a log line every few seconds elsewhere."""

    def __init__(self, summary: SyncSummary, client: KeapClient, bar: bool) -> None:
        self._summary = summary
        self._client = client
        self._started = time.monotonic()
        self._bar = (
            Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            if bar
            else None
        )
        self._task = self._bar.add_task("sync", total=None, info="") if self._bar else None
        self._last_log = 0.0

    def start(self, total: int | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)
            self._bar.start()

    def tick(self) -> None:
        s = self._summary
        elapsed = max(1e-6, time.monotonic() - self._started)
        calls = self._client.stats.calls
        info = (
            f"{s.contacts_scanned} contacts, {s.bounced_found} bounced, "
            f"{s.remediated} remediated, {calls} calls, {calls / elapsed:.1f}/s"
        )
        if self._bar is not None and self._task is not None:
            done = s.addresses_listed if s.strategy == Strategy.ADDRESSES else s.contacts_scanned
            self._bar.update(self._task, completed=done, info=info)
        elif time.monotonic() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            log.info("sync progress: %s", info)

    def stop(self) -> None:
        self.tick()
        if self._bar is not None:
            self._bar.stop()


# --- the run ----------------------------------------------------------------------------------


class SyncRun:
    """One ``connector sync``: lock, choose, scan and queue, remediate, checkpoint, summarise."""

    def __init__(self, rt: Runtime, options: SyncOptions, out: TextIO) -> None:
        self.rt = rt
        self.store: Store = rt.store
        self.client = rt.client
        self.policy = rt.policy
        self.options = options
        self.out = out
        self.owner = owner_id()
        self.summary = SyncSummary(dry_run=options.dry_run)
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.scanned = asyncio.Event()
        self.plan = PlanWriter(out, options.format) if options.dry_run else None
        self.calls_before = rt.client.stats.calls
        bar = options.progress if options.progress is not None else sys.stderr.isatty()
        self.reporter = Reporter(self.summary, rt.client, bar)

    async def run(self) -> SyncSummary:
        started = time.monotonic()
        if not self.options.dry_run:
            await self._acquire()
        try:
            with self._signals():
                await self._run()
        finally:
            if not self.options.dry_run:
                await self.store.release_sync(SYNC_NAME, self.owner)
            self.summary.api_calls = self.client.stats.calls - self.calls_before
            self.summary.elapsed_seconds = time.monotonic() - started
        return self.summary

    async def _run(self) -> None:
        resuming = await self._checkpoint()
        choice = await choose_strategy(self.client, self.policy, self.options, resuming)
        self.summary.strategy, self.summary.reason = choice.strategy.value, choice.reason
        self.summary.resumed = resuming is not None
        log.info("sync: strategy %s (%s)", choice.strategy, choice.reason)
        if self.plan is not None:
            self.plan.start()
        self.reporter.start(choice.total)
        tasks = [asyncio.create_task(self._ticker(), name="sync-progress")]
        if not self.options.dry_run:
            tasks.append(asyncio.create_task(self._heartbeat(), name="sync-heartbeat"))
        try:
            await self._scan_and_work(choice, resuming)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.reporter.stop()
        if self.plan is not None:
            self.plan.finish()

    # --- lock, checkpoint, signals ----------------------------------------------------------

    async def _acquire(self) -> None:
        if await self.store.acquire_sync(SYNC_NAME, self.owner, STALE_AFTER):
            return
        held = Checkpoint.load(await self.store.load_checkpoint(SYNC_NAME))
        if held is not None and _dead_local_owner(held.owner):
            log.warning("taking over the sync lock of a process that is gone (%s)", held.owner)
            if await self.store.acquire_sync(SYNC_NAME, self.owner, timedelta(0)):
                return
        raise SyncRefusedError("another `connector sync` is running against this store")

    async def _checkpoint(self) -> Checkpoint | None:
        """The checkpoint to resume from, if it fits this run; records this run as its owner."""
        if self.options.dry_run:
            return None
        saved = Checkpoint.load(await self.store.load_checkpoint(SYNC_NAME))
        since = keap_time(self.options.since) if self.options.since else None
        usable = (
            saved is not None
            and not self.options.restart
            and saved.since == since
            and self.options.strategy in (Strategy.AUTO, saved.strategy)
            and saved.strategy in (Strategy.CONTACTS, Strategy.ADDRESSES)
        )
        if saved is not None and not usable:
            log.info("sync: starting over instead of resuming (restart, or other options)")
        resuming = saved if usable else None
        await self._save(
            resuming.strategy if resuming else "",
            resuming.page_token if resuming else None,
            scanned=resuming.scanned if resuming else False,
        )
        return resuming

    async def _save(self, strategy: str, token: str | None, *, scanned: bool = False) -> None:
        since = keap_time(self.options.since) if self.options.since else None
        await self.store.save_checkpoint(
            SYNC_NAME, Checkpoint(strategy, since, token, self.owner, scanned).dump()
        )

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM finish the page in hand, save the checkpoint, and stop."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if self.options.install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.warning("sync: %s received; stopping after the current page", sig.name)
        self.summary.interrupted = True
        self.stop.set()
        self.wake.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if not await self.store.acquire_sync(SYNC_NAME, self.owner, STALE_AFTER):
                log.error("sync: another run took the lock over; stopping")
                self.stop.set()
                return

    async def _ticker(self) -> None:
        while True:
            self.reporter.tick()
            await asyncio.sleep(0.5)

    # --- scanning and working together ------------------------------------------------------

    async def _scan_and_work(self, choice: Choice, resuming: Checkpoint | None) -> None:
        scanner = self._scanner(choice.strategy)
        pages: asyncio.Queue[ScanPage | None] = asyncio.Queue(maxsize=READ_AHEAD)
        start = resuming.page_token if resuming else None
        skip_scan = resuming is not None and resuming.scanned
        reader = asyncio.create_task(
            self._read(scanner, start, pages, skip=skip_scan), name="sync-read"
        )
        worker = None
        if not self.options.dry_run:
            worker = asyncio.create_task(self._work(), name="sync-worker")
        try:
            scan_ended = await self._consume(choice.strategy, pages, reader)
        finally:
            self.scanned.set()
            self.wake.set()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if worker is not None:
                await worker
        self.summary.completed = scan_ended and not self.stop.is_set()
        if not self.options.dry_run:
            self.summary.left_queued = await self._left_queued()
            if self.summary.completed:
                await self.store.clear_checkpoint(SYNC_NAME)

    def _scanner(self, strategy: Strategy) -> Scanner:
        since = self.options.since
        if strategy is Strategy.ADDRESSES:
            return AddressScan(self.client, self.policy, since)
        return ContactScan(self.client, self.policy, since, _engagement(self.policy))

    async def _read(
        self,
        scanner: Scanner,
        start: str | None,
        pages: asyncio.Queue[ScanPage | None],
        *,
        skip: bool = False,
    ) -> None:
        """Reads ahead of the consumer; the bounded queue keeps memory to a few pages."""
        if not skip:
            async for page in scanner.pages(start):
                await pages.put(page)
        await pages.put(None)

    async def _consume(
        self,
        strategy: Strategy,
        pages: asyncio.Queue[ScanPage | None],
        reader: asyncio.Task[None],
    ) -> bool:
        """Queues page after page; True when the scan reached the end of the account.

        The end of the scan is recorded, not yet cleared: the checkpoint goes only once the
        queued findings are remediated, so a run killed while remediating is finished by the
        next one without another scan.
        """
        while not self.stop.is_set():
            page = await self._next(pages, reader)
            if page is None:
                if not self.options.dry_run:
                    await self._save(strategy.value, None, scanned=True)
                return True
            finished = await self._handle_page(page)
            self.summary.pages += 1
            if not self.options.dry_run:
                await self._save(strategy.value, page.after if finished else page.resume)
            self.wake.set()
            if not finished:
                self.summary.limit_reached = True
                return False
        return False

    async def _next(
        self, pages: asyncio.Queue[ScanPage | None], reader: asyncio.Task[None]
    ) -> ScanPage | None:
        """The next page, or the reader's failure as soon as it happens."""
        getter = asyncio.ensure_future(pages.get())
        await asyncio.wait([getter, reader], return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        reader.result()
        return None

    async def _handle_page(self, page: ScanPage) -> bool:
        """Queue (or plan) the page's findings; False when ``--limit`` cut the page short."""
        s = self.summary
        s.contacts_scanned += page.contacts
        s.addresses_listed += page.addresses
        s.bounced_found += len(page.findings)
        if not self.options.dry_run:
            await self._end_episodes(page)
        pending = list(page.findings)
        while pending:
            room = self._room()
            if room <= 0:
                s.bounced_found -= len(pending)
                return False
            chunk, pending = pending[:room], pending[room:]
            for outcome in await asyncio.gather(*(self._handle(f) for f in chunk)):
                setattr(s, outcome, getattr(s, outcome) + 1)
        return True

    def _room(self) -> int:
        limit = self.options.limit
        if limit is None:
            return CONTACT_PAGE_SIZE * 3
        return limit - (self.summary.planned if self.options.dry_run else self.summary.queued)

    async def _end_episodes(self, page: ScanPage) -> None:
        """Forget the episode keys of addresses seen outside the status they were queued in."""
        statuses = sorted(self.policy.status_map)
        keys = [episode_key(c, e, s) for c, e in page.healthy for s in statuses]
        keys += [
            episode_key(f.contact.id, f.address.email, s)
            for f in page.findings
            for s in statuses
            if s != f.status
        ]
        ended = await self.store.forget_dedupe(keys)
        if not ended:
            return
        now = datetime.now(UTC).isoformat()
        addresses = {k.rsplit(":", 1)[0].removeprefix("sync:") for k in ended}
        for address in sorted(addresses):
            contact_id, _, email = address.partition(":")
            await self.store.save_checkpoint(episode_end_name(contact_id, email), now)
        self.summary.episodes_ended += len(ended)

    async def _handle(self, finding: Finding) -> str:
        if await self._already_counted(finding):
            return "already_counted"
        if self.plan is not None:
            self.plan.add(plan_row(finding, await self._plan(finding)))
            return "planned"
        added = await self.store.add_event(sync_event(finding), None)
        return "already_queued" if added.duplicate else "queued"

    async def _already_counted(self, finding: Finding) -> bool:
        """Whether the store already counted this bounce, by the webhook or an earlier sync.

        Keap's status does not say when the address bounced, so a strike of the same bounce
        type means this episode is already counted, unless sync has since seen the address
        recover (the episode-end mark is newer than the strike): then this is a new bounce.
        """
        strikes = await self.store.strikes_for(finding.contact.id, finding.address.email)
        times = [s.occurred_at for s in strikes if s.bounce_type == finding.bounce_type.value]
        if not times:
            return False
        mark = await self.store.load_checkpoint(
            episode_end_name(finding.contact.id, finding.address.email)
        )
        return mark is None or max(times) >= datetime.fromisoformat(mark)

    async def _plan(self, finding: Finding) -> Plan:
        """What the worker would do, from the same inputs; reads the strike history only."""
        history = await self.store.strikes_for(finding.contact.id, finding.address.email)
        event = BounceEvent(
            contact_id=finding.contact.id,
            email=finding.address.email,
            bounce_type=finding.bounce_type,
            occurred_at=datetime.now(UTC),
        )
        strikes = [Strike(BounceType(h.bounce_type), h.occurred_at) for h in history]
        return decide(self.policy, event, contact_view(finding), strikes)

    async def _work(self) -> None:
        """Remediate alongside the scan until the scan is over and nothing is due."""
        options = WorkerOptions(
            concurrency=self.options.worker_concurrency,
            max_attempts=self.rt.settings.connector_max_event_attempts,
            lease=timedelta(seconds=self.rt.settings.connector_lease_seconds),
        )
        worker = Worker(self.store, self.client, self.policy, self.rt.metrics, options)
        while True:
            result = await worker.drain_once()
            self._tally(result)
            if result.processed and not self.stop.is_set():
                continue
            if self.scanned.is_set() or self.stop.is_set():
                return
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    def _tally(self, result: DrainResult) -> None:
        self.summary.remediated += result.done
        self.summary.failed += result.failed
        self.summary.dead += result.dead

    async def _left_queued(self) -> int:
        stats = await self.store.queue_stats()
        return sum(stats.counts.get(k, 0) for k in ("queued", "failed", "processing"))


def sync_event(finding: Finding) -> NewEvent:
    """A finding as a store event; the contact and the address status travel with it, so the
    worker reads neither again."""
    raw: dict[str, Any] = {
        "contact": finding.contact.model_dump(mode="json"),
        "status": finding.status,
    }
    if finding.email_status is not None:
        raw["email_status"] = finding.email_status.model_dump(mode="json")
    return NewEvent(
        source="sync",
        bounce_type=finding.bounce_type.value,
        contact_id=finding.contact.id,
        email=finding.address.email,
        keap_count=None,
        dedupe_key=episode_key(finding.contact.id, finding.address.email, finding.status),
        raw=json.dumps(raw, separators=(",", ":")),
    )


def contact_view(finding: Finding) -> ContactView:
    target = pick_address(finding.contact, finding.address.email)
    address = target.address if target is not None else finding.address
    contact = finding.contact
    status = finding.email_status
    return ContactView(
        contact_id=contact.id,
        email_field=address.field,
        fields={
            "contact_id": contact.id,
            "given_name": contact.given_name or "",
            "family_name": contact.family_name or "",
            "email": address.email,
            "email_field": address.field,
        },
        last_open_time=status.last_open_time if status else None,
        last_click_time=status.last_click_time if status else None,
    )


async def run_sync(
    settings: Settings,
    options: SyncOptions,
    *,
    out: TextIO | None = None,
    prepare: Callable[[Runtime], None] | None = None,
) -> SyncSummary:
    """The core of ``connector sync``; ``out`` receives the dry-run plan (stdout by default).

    ``prepare`` lets a caller adjust the assembled runtime first (tests, benchmarks).
    """
    if options.limit is not None and options.limit < 1:
        raise InputError("--limit must be at least 1")
    async with runtime(settings) as rt:
        if prepare is not None:
            prepare(rt)
        return await SyncRun(rt, options, out or sys.stdout).run()


def exit_code(summary: SyncSummary) -> int:
    """0 when the run did what was asked (to the end, or to ``--limit``); 130 when a signal
    stopped it, as for Ctrl-C anywhere in the CLI: scripts can tell an unfinished scan."""
    return 130 if summary.interrupted and not summary.completed else 0


def command(settings: Settings, options: SyncOptions) -> int:
    """``connector sync`` without its argument parsing: run, print the summary on stderr.

    The summary goes to stderr so that ``--dry-run --format json|csv`` leaves stdout clean.
    """
    summary = asyncio.run(run_sync(settings, options))
    for line in summary.lines():
        print(line, file=sys.stderr)
    return exit_code(summary)
