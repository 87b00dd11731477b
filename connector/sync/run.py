"""``connector sync``: find the addresses Keap already marks as bounced and remediate them.

Keap's HTTP Post fires once, unsigned, and not at all while our server is down, so the webhook
alone leaves gaps. Sync closes them: it reads Keap's own per-address email status, turns every
address in a status the policy maps (``[sync.status_map]``) into an ordinary store event, and lets
the same worker that handles webhook events plan and carry it out. Nothing here decides policy,
and nothing here prints: progress goes to a :class:`~connector.sync.model.SyncProgress`, the
dry run's rows come back in the summary, and ``connector/cli/sync_view.py`` shows both.

This module is the run: lock, checkpoint, signals, queuing findings and draining them. The scans
are in :mod:`connector.sync.scan`, the choice between them in :mod:`connector.sync.strategy`.

Pages are read ahead into a bounded queue while the worker remediates earlier findings, both
sharing the client's rate limiter, so Keap's throttle budget is spent continuously. Nothing is
held per contact beyond the page in hand: memory stays flat however large the account.

A run is resumable: after every page the checkpoint (the next page token) is stored, and a run
that stops for any reason (Ctrl-C, SIGTERM, a crash, SIGKILL) starts from there next time.
SIGINT and SIGTERM stop every phase within moments: the probes and the page being read are
cancelled, the checkpoint stays at the last page fully queued.

Over 400 lines because :class:`SyncRun` keeps the lock, the checkpoint, the signals and the
scan/work hand-off together: they share one stop flag and one summary, and split apart each
would need the others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from connector.bounces import BounceType
from connector.config import Settings
from connector.errors import InputError, SyncRefusedError
from connector.pipeline.outcome import StepKind
from connector.pipeline.plan import PlanInput, StepPlan, plan_steps
from connector.pipeline.run import past_events, protected
from connector.pipeline.target import Evidence, Target, pick
from connector.policy import Policy, Strike
from connector.service import Runtime, runtime
from connector.store import NewEvent, Store
from connector.sync.model import (
    PlanRow,
    ProgressSnapshot,
    Strategy,
    SyncOptions,
    SyncProgress,
    SyncSummary,
)
from connector.sync.scan import (
    ADDRESS_PAGE_SIZE,
    ADDRESSES_PER_CONTACT,
    CONTACT_PAGE_SIZE,
    AddressScan,
    ContactScan,
    Finding,
    Scanner,
    ScanPage,
    episode_end_name,
    episode_key,
    keap_time,
    page_bound,
)
from connector.sync.strategy import Choice, choose_strategy, engagement, estimate_contacts
from connector.worker import DrainResult, Worker, WorkerOptions

log = logging.getLogger("connector.sync")

SYNC_NAME = "sync"
READ_AHEAD = 2
STALE_AFTER = timedelta(minutes=2)
HEARTBEAT_SECONDS = 20.0
TICK_SECONDS = 0.5
LOG_EVERY_SECONDS = 10.0

R = TypeVar("R")


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
    if host != socket.gethostname() or not (pid_text.isascii() and pid_text.isdigit()):
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --- progress without a terminal ---------------------------------------------------------------


class LogProgress:
    """The default :class:`SyncProgress`: a log line every few seconds, nothing else."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self._every = every
        self._last = 0.0

    def on_start(self, strategy: str, total: int | None) -> None:
        self._last = time.monotonic()

    def on_progress(self, snapshot: ProgressSnapshot) -> None:
        if time.monotonic() - self._last >= self._every:
            self._last = time.monotonic()
            log.info("sync progress: %s", snapshot.describe())

    def on_finding(self, row: PlanRow) -> None:
        return None

    def on_done(self, snapshot: ProgressSnapshot) -> None:
        log.info("sync progress: %s", snapshot.describe())


# --- the planning a dry run shows ---------------------------------------------------------------


async def plan_finding(
    store: Store, policy: Policy, finding: Finding, *, protect: bool = False
) -> StepPlan:
    """What the worker would do with ``finding`` (dry run only): the worker's own planning.

    The same ``pipeline.plan.plan_steps`` from the same inputs (strikes, engagement, the
    contact's earlier steps for its bounce episode); it reads the store and writes nothing.
    """
    target = pick(finding.contact, finding.address.email) or Target(
        finding.contact, finding.address, Evidence.POSTED
    )
    history = await store.strikes_for(finding.contact.id, finding.address.email)
    status = finding.email_status
    return plan_steps(
        PlanInput(
            policy=policy,
            target=target,
            bounce_type=finding.bounce_type,
            occurred_at=datetime.now(UTC),
            keap_count=None,
            strikes=[Strike(BounceType(h.bounce_type), h.occurred_at) for h in history],
            last_open_time=status.last_open_time if status else None,
            last_click_time=status.last_click_time if status else None,
            past=await past_events(store, finding.contact.id),
            protected=protect,
        )
    )


def plan_row(finding: Finding, plan: StepPlan) -> PlanRow:
    """The plan in the outcome record's words: a step the plan already skips says why."""
    changes = {StepKind.TAG_ADD: "+", StepKind.TAG_REMOVE: "-"}
    tags = [f"{changes[s.kind]}{s.subject}" for s in plan.steps if s.kind in changes]
    destructive = next((s for s in plan.steps if s.kind.destructive), None)
    action = "none" if destructive is None else destructive.kind.value
    if destructive is not None and destructive.skip is not None:
        action += f" skipped ({destructive.skip})"
    rule = plan.policy_plan.rule
    return PlanRow(
        contact=finding.contact.id,
        address=finding.address.email,
        field=finding.address.field,
        status=finding.status,
        bounce_type=finding.bounce_type.value,
        rule="" if rule is None else str(rule),
        action=action,
        tags=" ".join(tags),
    )


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


# --- the run ----------------------------------------------------------------------------------


class SyncRun:
    """One ``connector sync``: lock, choose, scan and queue, remediate, checkpoint, summarise."""

    def __init__(self, rt: Runtime, options: SyncOptions, progress: SyncProgress) -> None:
        self.rt = rt
        self.store: Store = rt.store
        self.client = rt.client
        self.policy = rt.policy
        self.options = options
        self.progress = progress
        self.owner = owner_id()
        self.summary = SyncSummary(
            dry_run=options.dry_run, plan=[] if options.dry_run else None, limit=options.limit
        )
        # The events this run queued, and what the worker made of every event it took: the
        # summary tells this run's work from the queue an earlier run (or the webhook) left.
        self.queued_ids: set[int] = set()
        self.outcomes: dict[int, str] = {}
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.scanned = asyncio.Event()
        self.calls_before = rt.client.stats.calls
        self.started = time.monotonic()

    async def run(self) -> SyncSummary:
        self.started = time.monotonic()
        if not self.options.dry_run:
            await self._acquire()
        try:
            with self._signals():
                await self._run()
        finally:
            self._count_outcomes()
            if not self.options.dry_run:
                await self.store.release_sync(SYNC_NAME, self.owner)
            self.summary.api_calls = self.client.stats.calls - self.calls_before
            self.summary.elapsed_seconds = time.monotonic() - self.started
        return self.summary

    async def _run(self) -> None:
        resuming = await self._checkpoint()
        choice = await self._unless_stopped(
            choose_strategy(
                self.client,
                self.policy,
                self.options,
                resuming.strategy if resuming else None,
                self.stop,
            )
        )
        if choice is None:
            log.warning("sync: stopped while choosing the strategy")
            return
        self.summary.strategy, self.summary.reason = choice.strategy.value, choice.reason
        self.summary.resumed = resuming is not None
        log.info("sync: strategy %s (%s)", choice.strategy, choice.reason)
        self.progress.on_start(choice.strategy.value, choice.total)
        tasks = [asyncio.create_task(self._ticker(), name="sync-progress")]
        if not self.options.dry_run:
            tasks.append(asyncio.create_task(self._heartbeat(), name="sync-heartbeat"))
        try:
            await self._scan_and_work(choice, resuming)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.progress.on_done(self._snapshot())

    async def _unless_stopped(self, work: Awaitable[R]) -> R | None:
        """``work``'s result, or None as soon as a stop is requested (``work`` is cancelled)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            return None
        return task.result()

    def _snapshot(self) -> ProgressSnapshot:
        s = self.summary
        return ProgressSnapshot(
            strategy=s.strategy,
            contacts_scanned=s.contacts_scanned,
            addresses_listed=s.addresses_listed,
            bounced_found=s.bounced_found,
            remediated=sum(1 for kind in self.outcomes.values() if kind == "done"),
            api_calls=self.client.stats.calls - self.calls_before,
            elapsed_seconds=time.monotonic() - self.started,
        )

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
        """SIGINT and SIGTERM stop the run: see :meth:`request_stop`."""
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
        log.warning("sync: %s received; stopping (the checkpoint keeps the last page)", sig.name)
        self.request_stop()

    def request_stop(self) -> None:
        """Stop as a signal does: probes and the page being read are abandoned, the findings
        already handed over are kept, and the checkpoint stays at the last page fully queued."""
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
            self.progress.on_progress(self._snapshot())
            await asyncio.sleep(TICK_SECONDS)

    # --- scanning and working together ------------------------------------------------------

    async def _scan_and_work(self, choice: Choice, resuming: Checkpoint | None) -> None:
        pages: asyncio.Queue[ScanPage | None] = asyncio.Queue(maxsize=READ_AHEAD)
        start = resuming.page_token if resuming else None
        skip_scan = resuming is not None and resuming.scanned
        reader = asyncio.create_task(
            self._read(None if skip_scan else choice, start, pages), name="sync-read"
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

    async def _scanner(self, choice: Choice) -> Scanner:
        """The scan of ``choice``, bounded by the account's size (one probe when not known)."""
        since = self.options.since
        contacts = choice.contacts
        if contacts is None:
            contacts = await estimate_contacts(self.client, self.stop)
        if choice.strategy is Strategy.ADDRESSES:
            bound = page_bound(contacts * ADDRESSES_PER_CONTACT, ADDRESS_PAGE_SIZE)
            return AddressScan(self.client, self.policy, since, bound, self.stop)
        bound = page_bound(contacts, CONTACT_PAGE_SIZE)
        return ContactScan(
            self.client, self.policy, since, engagement(self.policy), bound, self.stop
        )

    async def _read(
        self, choice: Choice | None, start: str | None, pages: asyncio.Queue[ScanPage | None]
    ) -> None:
        """Reads ahead of the consumer; the bounded queue keeps memory to a few pages.

        ``choice`` None: the scan is already over (a resumed run only finishes the work).
        """
        if choice is not None:
            scanner = await self._scanner(choice)
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
                if self.stop.is_set():
                    return False
                if not self.options.dry_run:
                    await self._save(strategy.value, None, scanned=True)
                return True
            finished = await self._handle_page(page)
            self.summary.pages += 1
            if not self.options.dry_run:
                await self._save(strategy.value, page.after if finished else page.resume)
            self.progress.on_progress(self._snapshot())
            self.wake.set()
            if not finished:
                self.summary.limit_reached = True
                return False
        return False

    async def _next(
        self, pages: asyncio.Queue[ScanPage | None], reader: asyncio.Task[None]
    ) -> ScanPage | None:
        """The next page; None at the end or on a stop; the reader's failure as it happens."""
        getter = asyncio.ensure_future(pages.get())
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([getter, reader, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        if reader.done():
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
        if self.summary.plan is not None:
            shielded = await protected(self.client, self.policy, finding.contact)
            plan = await plan_finding(self.store, self.policy, finding, protect=shielded)
            row = plan_row(finding, plan)
            self.summary.plan.append(row)
            self.progress.on_finding(row)
            return "planned"
        added = await self.store.add_event(sync_event(finding), None)
        if added.duplicate:
            return "already_queued"
        self.queued_ids.add(added.event_id)
        return "queued"

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
                if self.scanned.is_set() and not self.stop.is_set():
                    # The end of a sync: expired opt-outs and quiet incidents settle now.
                    await worker.due_checks(force=True)
                return
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    def _tally(self, result: DrainResult) -> None:
        self.outcomes.update(result.outcomes)

    def _count_outcomes(self) -> None:
        """Split what the worker did: this run's findings (bounded by ``--limit``) apart from
        the events queued before it (an interrupted run's findings, callbacks)."""
        s = self.summary
        s.remediated = s.failed = s.dead = 0
        s.earlier_remediated = s.earlier_failed = s.earlier_dead = 0
        names = {"done": "remediated", "failed": "failed", "dead": "dead"}
        for event_id, kind in self.outcomes.items():
            if kind not in names:
                continue
            name = names[kind] if event_id in self.queued_ids else f"earlier_{names[kind]}"
            setattr(s, name, getattr(s, name) + 1)

    async def _left_queued(self) -> int:
        stats = await self.store.queue_stats()
        return sum(stats.counts.get(k, 0) for k in ("queued", "failed", "processing"))


async def run_sync(
    settings: Settings,
    options: SyncOptions,
    *,
    progress: SyncProgress | None = None,
    prepare: Callable[[Runtime], None] | None = None,
    started: Callable[[SyncRun], None] | None = None,
) -> SyncSummary:
    """The core of ``connector sync``: the summary, with the dry run's rows in ``plan``.

    ``progress`` hears how the run goes (a log line every few seconds by default); ``prepare``
    lets a caller adjust the assembled runtime first, and ``started`` see the run before it
    starts, e.g. to call :meth:`SyncRun.request_stop` (tests, benchmarks).
    """
    if options.limit is not None and options.limit < 1:
        raise InputError("--limit must be at least 1")
    async with runtime(settings) as rt:
        if prepare is not None:
            prepare(rt)
        run = SyncRun(rt, options, progress or LogProgress())
        if started is not None:
            started(run)
        return await run.run()
