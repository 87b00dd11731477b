"""The worker: claims events, reads the contact, plans, carries the plan out, audits each step.

Exactly-once effects rest on the audit log. Every step of a plan has a stable key inside its
event (``opt_out``, ``blank:EMAIL2``, ``tag_add:Third Strike``, ``note``, ``task:0``), and a step
recorded ``done`` is never sent again, so an event re-run after a crash or a failure picks up
where it stopped. Notes and tasks are not idempotent in Keap: before one is sent the step is
recorded ``pending``, and a ``pending`` step found on a re-run (the answer was lost to a timeout,
a dropped connection or a kill) is first looked for in Keap by the reference the text carries;
only if it is not there is it sent again.

The worker never drops an event. Transient failures are retried with backoff; after
``CONNECTOR_MAX_EVENT_ATTEMPTS`` the event is ``dead`` and visible in ``connector events list``.
Lost credentials put the event back in the queue untouched and pause the worker until a human
runs ``connector auth login``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connector.bounces import BounceType
from connector.errors import (
    ConnectorError,
    KeapNotFoundError,
    PermanentError,
    ReauthRequiredError,
    StoreUnavailableError,
)
from connector.keap.client import KeapClient
from connector.keap.models import (
    BOUNCE_STATUSES,
    Contact,
    EmailAddress,
    EmailAddressStatus,
    EmailField,
)
from connector.logs import mask_email
from connector.metrics import Metrics
from connector.policy import (
    Action,
    BounceEvent,
    ContactView,
    Plan,
    Policy,
    Strike,
    decide,
)
from connector.store import AuditWrite, Event, StepStatus, Store, StrikeRecord

log = logging.getLogger("connector.worker")

CONTACT_FIELDS = ("email_addresses", "given_name", "family_name", "tag_ids")
REAUTH_PAUSE = timedelta(seconds=10)
STORE_RETRY_SECONDS = 2.0
TAG_BATCH_SIZE = 100


def event_marker(event_id: int) -> str:
    """The reference written into notes and tasks, so a lost answer can be checked in Keap."""
    return f"[bounce-connector event {event_id}]"


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"  # noqa: S311


@dataclass(frozen=True)
class Target:
    """The contact and the address an event is about, and which rule picked the address."""

    contact: Contact
    address: EmailAddress
    picked_by: str


def pick_address(contact: Contact, posted: str | None) -> Target | None:
    """Which of the contact's addresses bounced.

    The posted address when it is one of the contact's (Keap filled it in); else the address
    Keap marks as bounced; else EMAIL1. The choice is recorded so an operator can see why.
    """
    usable = [a for a in contact.email_addresses if a.email]
    if posted:
        found = contact.address(posted)
        if found is not None and found.email:
            return Target(contact, found, "posted address")
    bounced = [a for a in usable if a.email_opt_status in BOUNCE_STATUSES]
    if bounced:
        return Target(contact, sorted(bounced, key=lambda a: a.field)[0], "bounce status")
    first = contact.in_field("EMAIL1")
    if first is not None and first.email:
        return Target(contact, first, "EMAIL1")
    return Target(contact, usable[0], "only address") if usable else None


@dataclass
class _Pending:
    contact_ids: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class TagBatcher:
    """Coalesces "apply tag T to contact C" from concurrent events into one call per tag.

    Keap v2 applies one tag to many contacts per call; events processed together (a burst of
    callbacks, a sync page) each wait a few milliseconds so their tag writes share calls.
    """

    def __init__(self, client: KeapClient, delay: float = 0.05) -> None:
        self._client = client
        self._delay = delay
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, op: str, tag_id: str, contact_id: str) -> None:
        key = (op, tag_id)
        batch = self._pending.setdefault(key, _Pending())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.contact_ids.append(contact_id)
        batch.waiters.append(future)
        if len(batch.contact_ids) >= TAG_BATCH_SIZE:
            self._flush_soon(key, 0.0)
        elif batch.timer is None:
            batch.timer = asyncio.get_running_loop().call_later(
                self._delay, self._flush_soon, key, 0.0
            )
        await future

    def _flush_soon(self, key: tuple[str, str], _: float) -> None:
        batch = self._pending.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.ensure_future(self._flush(key, batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, key: tuple[str, str], batch: _Pending) -> None:
        op, tag_id = key
        call = self._client.apply_tag if op == "add" else self._client.remove_tag
        try:
            await call(tag_id, sorted(set(batch.contact_ids)))
        except BaseException as exc:  # every waiter must learn the outcome, whatever it is
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass
class WorkerOptions:
    concurrency: int = 4
    max_attempts: int = 8
    dry_run: bool = False
    lease: timedelta = timedelta(minutes=10)
    idle_poll: float = 1.0
    base_backoff: float = 5.0
    max_backoff: float = 900.0


@dataclass
class DrainResult:
    processed: int = 0
    done: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0  # taken over by another worker after this one's lease ran out


Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Worker:
    def __init__(
        self,
        store: Store,
        client: KeapClient,
        policy: Policy,
        metrics: Metrics,
        options: WorkerOptions,
        *,
        owner: str | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self._store = store
        self._client = client
        self._policy = policy
        self._metrics = metrics
        self._options = options
        self._owner = owner or default_owner()
        self._clock = clock
        self._tags = TagBatcher(client)
        self._paused_until: datetime | None = None
        self._reauth_logged = False

    # --- loops ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Process events until ``stop`` is set; ``wake`` cuts the idle wait short.

        A store that fails (disk full, read-only, locked) stops the work, not the loop: in
        ``serve`` the worker shares the process with the webhook, which must keep answering
        (503 while nothing can be stored) and take callbacks again as soon as it can. Events
        whose outcome could not be recorded keep their lease and are taken again after it.
        """
        wake = wake or asyncio.Event()
        store_failing = False
        while not stop.is_set():
            try:
                result = await self.drain_once()
            except StoreUnavailableError as exc:
                if not store_failing:
                    log.error("the store failed; the worker retries every few seconds: %s", exc)
                store_failing = True
                await _first_of(stop, asyncio.Event(), STORE_RETRY_SECONDS)
                continue
            if store_failing:
                log.info("the store answers again; the worker resumes")
                store_failing = False
            if result.processed and not self._paused():
                continue
            wake.clear()
            await _first_of(stop, wake, self._idle_wait())

    async def drain(self) -> DrainResult:
        """Process everything due now (``connector worker --once``)."""
        total = DrainResult()
        while True:
            result = await self.drain_once()
            for name in ("processed", "done", "failed", "dead", "released", "lost"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            if not result.processed or self._paused():
                return total

    async def drain_once(self) -> DrainResult:
        result = DrainResult()
        if self._paused():
            return result
        events = await self._store.claim_events(
            self._options.concurrency, self._options.lease, self._owner
        )
        tasks = {event.id: asyncio.ensure_future(self.process(event)) for event in events}
        keeper = asyncio.ensure_future(self._keep_leases(tasks))
        try:
            # Every event runs to its end even when another fails, so none is left orphaned.
            outcomes = await asyncio.gather(*tasks.values(), return_exceptions=True)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, asyncio.CancelledError):
                outcome = "lost"
            elif isinstance(outcome, BaseException):
                raise outcome
            result.processed += 1
            setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    async def _keep_leases(self, tasks: dict[int, asyncio.Task[str]]) -> None:
        """Renews the leases of the events still being worked on, every third of a lease.

        An event whose lease was taken over (this process stalled for longer than a lease) is
        stopped where it stands, its status left to the worker that holds it now: two workers
        acting on one event could write its note twice.
        """
        lease = self._options.lease
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            running = [event_id for event_id, task in tasks.items() if not task.done()]
            try:
                held = await self._store.renew_leases(running, self._owner, lease)
            except StoreUnavailableError as exc:
                log.warning("could not renew the leases of events %s: %s", running, exc)
                continue
            for event_id in set(running) - held:
                log.error(
                    "event %s was taken over by another worker; stopping work on it", event_id
                )
                tasks[event_id].cancel()

    def _paused(self) -> bool:
        return self._paused_until is not None and self._clock() < self._paused_until

    def _idle_wait(self) -> float:
        if self._paused_until is not None:
            return max(0.1, (self._paused_until - self._clock()).total_seconds())
        return self._options.idle_poll

    # --- one event --------------------------------------------------------------------------

    async def process(self, event: Event) -> str:
        """Carry one event through; returns the outcome kind (done/failed/dead/released)."""
        try:
            outcome = await self._remediate(event)
        except ReauthRequiredError as exc:
            return await self._release(event, exc)
        except ConnectorError as exc:
            return await self._fail(event, exc)
        except Exception as exc:  # a bug must cost one attempt, never the worker or the event
            log.exception("event %s: unexpected error", event.id)
            return await self._fail(event, exc)
        await self._store.complete_event(event.id, outcome)
        self._metrics.events_finished.labels(status="done").inc()
        self._reauth_logged = False
        log.info("event %s done: %s", event.id, outcome)
        return "done"

    async def _release(self, event: Event, exc: ReauthRequiredError) -> str:
        retry_at = self._clock() + REAUTH_PAUSE
        self._paused_until = retry_at
        await self._store.release_event(event.id, str(exc), retry_at)
        if not self._reauth_logged:
            log.error("Keap refused our credentials; events stay queued: %s", exc)
            self._reauth_logged = True
        return "released"

    async def _fail(self, event: Event, exc: BaseException) -> str:
        message = str(exc) or type(exc).__name__
        permanent = isinstance(exc, PermanentError)
        if permanent or event.attempts >= self._options.max_attempts:
            await self._store.fail_event(event.id, message, None)
            self._metrics.events_finished.labels(status="dead").inc()
            log.error("event %s dead after %s attempt(s): %s", event.id, event.attempts, message)
            return "dead"
        retry_at = self._clock() + timedelta(seconds=self._backoff(event.attempts, exc))
        await self._store.fail_event(event.id, message, retry_at)
        self._metrics.events_finished.labels(status="failed").inc()
        log.warning(
            "event %s attempt %s failed, retry at %s: %s",
            event.id,
            event.attempts,
            retry_at.isoformat(timespec="seconds"),
            message,
        )
        return "failed"

    def _backoff(self, attempts: int, exc: BaseException) -> float:
        ceiling = min(self._options.max_backoff, self._options.base_backoff * 2 ** (attempts - 1))
        wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)
        retry_after = getattr(exc, "retry_after", None)
        return max(wait, float(retry_after)) if retry_after else wait

    async def _remediate(self, event: Event) -> str:
        target = await self._target(event)
        if isinstance(target, str):
            return target
        bounce_type = BounceType(event.bounce_type)
        history = await self._store.record_strike(
            event.id, target.contact.id, target.address.email, bounce_type.value, event.received_at
        )
        status = await self._engagement(event, target, bounce_type)
        plan = decide(
            self._policy,
            BounceEvent(
                contact_id=target.contact.id,
                email=target.address.email,
                bounce_type=bounce_type,
                occurred_at=event.received_at,
                keap_count=event.keap_count,
            ),
            _view(target, status),
            [_strike(s) for s in history],
        )
        await _Execution(self, event, target, plan).run()
        return _summary(plan, target)

    async def _target(self, event: Event) -> Target | str:
        contact = await self._contact(event)
        if isinstance(contact, str):
            return contact
        pinned = await self._store.struck_address(event.id) if _rerun(event) else None
        if pinned is not None:
            return await self._pinned_target(event, contact, pinned)
        target = pick_address(contact, event.email)
        if target is None:
            return f"skipped: contact {contact.id} has no email address"
        return target

    async def _pinned_target(self, event: Event, contact: Contact, email: str) -> Target:
        """The address an earlier attempt chose, even if it is no longer on the contact.

        When it is gone (an earlier attempt blanked it), its field comes from that attempt's
        audit entry, so the blank step is recognised as the one already under way.
        """
        held = contact.address(email)
        if held is not None:
            return Target(contact, held, "earlier attempt")
        field_ = EmailField.UNSPECIFIED.value
        for entry in await self._store.audit_for_event(event.id):
            before = json.loads(entry.before_value or "{}") if entry.kind == "blank_email" else {}
            if str(before.get("email", "")).casefold() == email.casefold():
                field_ = str(before.get("field") or field_)
        gone = EmailAddress(email=email, field=field_)
        return Target(contact, gone, "earlier attempt (no longer on the contact)")

    async def _contact(self, event: Event) -> Contact | str:
        snapshot = _snapshot(event)
        if snapshot is not None:
            return snapshot
        if event.contact_id is None:
            found = await self._client.find_contacts_by_email(event.email or "")
            if not found:
                return f"skipped: no Keap contact has {mask_email(event.email or '')}"
            return sorted(found, key=lambda c: int(c.id) if c.id.isdigit() else 0)[0]
        try:
            return await self._client.get_contact(event.contact_id)
        except KeapNotFoundError:
            return f"skipped: contact {event.contact_id} no longer exists in Keap (404)"

    async def _engagement(
        self, event: Event, target: Target, bounce_type: BounceType
    ) -> EmailAddressStatus | None:
        """Opens and clicks matter only to rules that reset on engagement: read them only then."""
        if not needs_engagement(self._policy, bounce_type):
            return None
        carried = _status_snapshot(event, target.address.email)
        if carried is not None:
            return carried
        return await self._client.get_email_status(target.address.email)


def _rerun(event: Event) -> bool:
    """Whether an earlier attempt may have begun this event (crashed, failed, released, or
    finished and queued again by ``connector events retry``).

    Every claim counts an attempt, a release (which gives it back) leaves its error and a
    finished event its outcome, so only a first attempt can skip asking the store.
    """
    return event.attempts > 1 or event.last_error is not None or event.outcome is not None


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    await asyncio.wait(waiters, timeout=seconds, return_when="FIRST_COMPLETED")
    for waiter in waiters:
        waiter.cancel()


def needs_engagement(policy: Policy, bounce_type: BounceType) -> bool:
    return any(r.reset_on_engagement and bounce_type in r.bounce_types for r in policy.rules)


def _snapshot(event: Event) -> Contact | None:
    """A sync event carries the contact as the scan read it, saving a read per contact."""
    if event.source != "sync":
        return None
    try:
        data = json.loads(event.raw).get("contact")
    except (ValueError, AttributeError):
        return None
    return Contact.model_validate(data) if isinstance(data, dict) else None


def _status_snapshot(event: Event, email: str) -> EmailAddressStatus | None:
    """A sync event may carry the address status it read in bulk, saving a read per address."""
    if event.source != "sync":
        return None
    try:
        data = json.loads(event.raw).get("email_status")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    status = EmailAddressStatus.model_validate(data)
    return status if status.email.casefold() == email.casefold() else None


def _strike(record: StrikeRecord) -> Strike:
    return Strike(BounceType(record.bounce_type), record.occurred_at)


def _view(target: Target, status: EmailAddressStatus | None) -> ContactView:
    contact = target.contact
    fields = {
        "contact_id": contact.id,
        "given_name": contact.given_name or "",
        "family_name": contact.family_name or "",
        "email": target.address.email,
        "email_field": target.address.field,
    }
    return ContactView(
        contact_id=contact.id,
        email_field=target.address.field,
        fields=fields,
        last_open_time=status.last_open_time if status else None,
        last_click_time=status.last_click_time if status else None,
    )


def _summary(plan: Plan, target: Target) -> str:
    parts = [f"action {plan.action.value}"]
    if plan.add_tags:
        parts.append("tags +" + ", +".join(plan.add_tags))
    if plan.remove_tags:
        parts.append("-" + ", -".join(plan.remove_tags))
    parts.append(f"{target.address.field} {mask_email(target.address.email)} ({target.picked_by})")
    return "; ".join(parts)


@dataclass(frozen=True)
class StepResult:
    """What a step changed: values before and after, or that nothing needed doing."""

    before: str | None = None
    after: str | None = None
    skipped: bool = False


StepAction = Callable[[], Awaitable[StepResult]]


class _Execution:
    """The steps of one plan for one event, each skipped when the audit log says it is done."""

    def __init__(self, worker: Worker, event: Event, target: Target, plan: Plan) -> None:
        self.worker = worker
        self.client = worker._client
        self.store = worker._store
        self.event = event
        self.target = target
        self.plan = plan
        self.dry_run = worker._options.dry_run
        self.done: dict[str, StepStatus] = {}

    async def run(self) -> None:
        self.done = {a.step: a.status for a in await self.store.audit_for_event(self.event.id)}
        if self.plan.action is Action.OPT_OUT:
            await self._step("opt_out", "opt_out", self._opt_out)
        if self.plan.action is Action.BLANK_EMAIL:
            await self._unique_step(
                f"blank:{self.target.address.field}",
                "blank_email",
                self._blank,
                self._blanked,
                pending=StepResult(before=self._address_json()),
            )
        await asyncio.gather(
            *(
                self._step(f"tag_add:{t}", "tag_add", self._tagger("add", t))
                for t in self.plan.add_tags
            ),
            *(
                self._step(f"tag_remove:{t}", "tag_remove", self._tagger("remove", t))
                for t in self.plan.remove_tags
            ),
        )
        if self.plan.note is not None:
            await self._unique_step("note", "note", self._note, self._note_exists)
        for index, title in enumerate(self.plan.tasks):
            await self._unique_step(
                f"task:{index}", "task", self._task(index, title), self._task_exists(index)
            )

    def _finished(self, step: str) -> bool:
        return self.done.get(step) in (StepStatus.DONE, StepStatus.SKIPPED)

    async def _step(self, step: str, kind: str, action: StepAction) -> None:
        if self._finished(step):
            return
        if self.dry_run:
            await self._audit(step, kind, StepStatus.PLANNED, self._planned(kind))
            return
        result = await action()
        status = StepStatus.SKIPPED if result.skipped else StepStatus.DONE
        await self._audit(step, kind, status, result)

    async def _unique_step(
        self,
        step: str,
        kind: str,
        action: StepAction,
        exists: Callable[[], Awaitable[bool]],
        pending: StepResult | None = None,
    ) -> None:
        """A write recorded pending before sending (with what a retry must know, ``pending``),
        and looked for in Keap before it is sent again."""
        if self._finished(step):
            return
        if self.dry_run:
            await self._audit(step, kind, StepStatus.PLANNED, self._planned(kind))
            return
        if self.done.get(step) is StepStatus.PENDING and await exists():
            found = StepResult(after="found in Keap after its answer was lost")
            await self._audit(step, kind, StepStatus.DONE, found)
            return
        await self._audit(step, kind, StepStatus.PENDING, pending or StepResult())
        await self._audit(step, kind, StepStatus.DONE, await action())

    async def _audit(self, step: str, kind: str, status: StepStatus, result: StepResult) -> None:
        await self.store.write_audit(
            AuditWrite(
                event_id=self.event.id,
                contact_id=self.target.contact.id,
                step=step,
                kind=kind,
                status=status,
                before_value=result.before,
                after_value=result.after,
                detail=self.plan.reason,
                dry_run=self.dry_run,
            )
        )
        if status in (StepStatus.DONE, StepStatus.PLANNED):
            self.worker._metrics.actions.labels(kind=kind, dry_run=str(self.dry_run).lower()).inc()

    def _address_json(self, **extra: str | None) -> str:
        address = self.target.address
        return json.dumps({"email": address.email, "field": address.field, **extra})

    def _planned(self, kind: str) -> StepResult:
        if kind in ("opt_out", "blank_email"):
            return StepResult(before=self._address_json())
        return StepResult()

    async def _opt_out(self) -> StepResult:
        address = self.target.address
        before = self._address_json(status=address.email_opt_status)
        if address.is_opt_in is False:
            return StepResult(before=before, skipped=True)
        status = await self.client.set_email_opt_status(
            address.email, opted_in=False, reason=self.plan.reason
        )
        return StepResult(before, json.dumps({"email": status.email, "status": status.status}))

    async def _blanked(self) -> bool:
        """The contact was read in this attempt: the address missing from it is blanked."""
        return self.target.contact.address(self.target.address.email) is None

    async def _blank(self) -> StepResult:
        address = self.target.address
        keep = [
            (a.email, a.field)
            for a in self.target.contact.email_addresses
            if a.email and a.field != address.field
        ]
        await self.client.replace_email_addresses(self.target.contact.id, keep)
        return StepResult(self._address_json(), json.dumps({"field": address.field, "email": None}))

    def _tagger(self, op: str, name: str) -> StepAction:
        async def run() -> StepResult:
            tag_id = (await self.client.find_or_create_tag(name)).id
            has = tag_id in self.target.contact.tag_ids
            if (op == "remove") != has:
                return StepResult(skipped=True)
            await self.worker._tags.submit(op, tag_id, self.target.contact.id)
            return StepResult(None, name) if op == "add" else StepResult(name, None)

        return run

    async def _note(self) -> StepResult:
        text = f"{self.plan.note}\n\n{event_marker(self.event.id)}"
        note = await self.client.create_note(
            self.target.contact.id, title=self.plan.note_title, text=text
        )
        return StepResult(after=f"note {note.id}")

    async def _note_exists(self) -> bool:
        marker = event_marker(self.event.id)
        notes = await self.client.list_notes(self.target.contact.id)
        return any(marker in (note.text or "") for note in notes)

    def _task_marker(self, index: int) -> str:
        return f"{event_marker(self.event.id)} task {index + 1}"

    def _task(self, index: int, title: str) -> StepAction:
        async def run() -> StepResult:
            description = f"{self.plan.reason}\n\n{self._task_marker(index)}"
            task = await self.client.create_task(
                self.target.contact.id, title=title, description=description
            )
            return StepResult(after=f"task {task.id}")

        return run

    def _task_exists(self, index: int) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            marker = self._task_marker(index)
            tasks = await self.client.list_tasks(self.target.contact.id)
            return any(marker in (task.description or "") for task in tasks)

        return run
