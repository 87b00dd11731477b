"""The worker: claims events, leases them, hands each to the pipeline, and retries failures.

What happens to one event (read, target, plan, execute, audit) lives in ``connector.pipeline``;
this module owns only the queue side: claims, leases and their renewal, backoff, and pausing
when Keap refuses our credentials.

The worker never drops an event. Transient failures are retried with backoff; after
``CONNECTOR_MAX_EVENT_ATTEMPTS`` the event is ``dead`` and visible in ``connector events list``.
Lost credentials put the event back in the queue untouched and pause the worker until a human
runs ``connector auth login``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial

from connector.alerts import Alert, AlertKind, raise_alert
from connector.errors import (
    ConnectorError,
    PermanentError,
    ReauthRequiredError,
    StoreUnavailableError,
)
from connector.keap.client import KeapClient
from connector.metrics import Metrics
from connector.pipeline.executor import Executor
from connector.pipeline.expire import due_summary, run_due_expiries
from connector.pipeline.run import Pipeline, needs_engagement
from connector.pipeline.tags import TagBatcher
from connector.policy import Policy
from connector.store import Event, Store

__all__ = ["DrainResult", "Worker", "WorkerOptions", "needs_engagement"]

log = logging.getLogger("connector.worker")

REAUTH_PAUSE = timedelta(seconds=10)
# How often the loop asks the credentials to renew what would die unused (an OAuth refresh
# token nearing Keap's 45 days): the check itself is a timestamp comparison.
KEEP_ALIVE_EVERY = timedelta(minutes=10)
STORE_RETRY_SECONDS = 2.0
# How often the loop looks for what falls due without an event: incidents to close, opt-outs
# whose ``expire`` has passed (one indexed query each when nothing is due).
DUE_CHECK_EVERY = timedelta(minutes=5)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"  # noqa: S311


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
    # event id -> what became of it (done/failed/dead/released/lost), so a caller can tell
    # its own events from others (``connector sync``: this run's findings from earlier ones)
    outcomes: dict[int, str] = field(default_factory=dict)


Clock = Callable[[], datetime]
# The policy to plan the next event with: a fixed ``Policy``, or a callable asked before each
# event (``connector.policy.reload.PolicyHolder``: the file reread when it changes).
PolicySource = Policy | Callable[[], Policy]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Worker:
    def __init__(
        self,
        store: Store,
        client: KeapClient,
        policy: PolicySource,
        metrics: Metrics,
        options: WorkerOptions,
        *,
        owner: str | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._options = options
        self._owner = owner or default_owner()
        self._clock = clock
        self._policy = policy if callable(policy) else (lambda: policy)
        self._pipeline = Pipeline(
            store,
            client,
            self._policy(),
            Executor(store, client, TagBatcher(client), metrics, options.dry_run),
        )
        self._client = client
        self._paused_until: datetime | None = None
        self._reauth_logged = False
        # Set while Keap refuses our credentials (revoked, expired grant), until an event is
        # done again: ``/readyz`` reports it (DESIGN 6, "Keap credentials usable").
        self.credentials_refused = False
        self._next_keep_alive: datetime | None = None
        self._next_due_check: datetime | None = None

    # --- loops ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Process events until ``stop`` is set; ``wake`` cuts the idle wait short.

        Continuous: up to ``concurrency`` events are in flight, and a new one is claimed as
        soon as one ends, so one slow event (a Keap retry, a long wait at the rate limiter)
        never holds the others' slots. On ``stop`` the events in flight run to their end.

        A store that fails (disk full, read-only, locked) stops the work, not the loop: in
        ``serve`` the worker shares the process with the webhook, which must keep answering
        (503 while nothing can be stored) and take callbacks again as soon as it can. Events
        whose outcome could not be recorded keep their lease and are taken again after it.
        """
        wake = wake or asyncio.Event()
        inflight: dict[int, asyncio.Task[str]] = {}
        keeper = asyncio.ensure_future(self._keep_leases(inflight))
        store_failing = False
        try:
            while not stop.is_set():
                try:
                    claimed = await self._claim_for(inflight)
                except StoreUnavailableError as exc:
                    if not store_failing:
                        log.error("the store failed; the worker retries every few seconds: %s", exc)
                    store_failing = True
                    await _first_of(stop, asyncio.Event(), STORE_RETRY_SECONDS, inflight)
                    continue
                if store_failing:
                    log.info("the store answers again; the worker resumes")
                    store_failing = False
                if claimed and len(inflight) >= self._options.concurrency:
                    await _first_of(stop, asyncio.Event(), None, inflight)
                    continue
                if claimed and not self._paused():
                    continue
                wake.clear()
                await _first_of(stop, wake, self._idle_wait(), inflight)
        finally:
            if inflight:
                await asyncio.gather(*inflight.values(), return_exceptions=True)
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def _claim_for(self, inflight: dict[int, asyncio.Task[str]]) -> int:
        """Claim what the free slots can take and start each event; returns how many."""
        await self._keep_credentials_alive()
        if self._paused():
            return 0
        await self.due_checks()
        free = self._options.concurrency - len(inflight)
        if free <= 0:
            return 0
        events = await self._store.claim_events(free, self._options.lease, self._owner)
        for event in events:
            task = asyncio.ensure_future(self.process(event))
            inflight[event.id] = task
            task.add_done_callback(partial(_ended, inflight, event.id))
        return len(events)

    async def drain(self) -> DrainResult:
        """Process everything due now (``connector worker --once``)."""
        total = DrainResult()
        while True:
            result = await self.drain_once()
            for name in ("processed", "done", "failed", "dead", "released", "lost"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            total.outcomes.update(result.outcomes)
            if not result.processed or self._paused():
                return total

    async def drain_once(self) -> DrainResult:
        result = DrainResult()
        await self._keep_credentials_alive()
        if self._paused():
            return result
        await self.due_checks()
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
        for event_id, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                outcome = "lost"
            elif isinstance(outcome, BaseException):
                raise outcome
            result.processed += 1
            setattr(result, outcome, getattr(result, outcome) + 1)
            result.outcomes[event_id] = outcome
        return result

    async def due_checks(self, *, force: bool = False) -> None:
        """What falls due without an event, at most every ``DUE_CHECK_EVERY`` (``force``: now):
        incidents a whole window below their threshold close, and expired opt-outs are opted
        in again (DESIGN 7a). A dry run changes nothing, so it checks nothing."""
        now = self._clock()
        if not force and self._next_due_check is not None and now < self._next_due_check:
            return
        self._next_due_check = now + DUE_CHECK_EVERY
        if self._options.dry_run:
            return
        policy = self._policy()
        if policy.incidents is not None:
            incidents = policy.incidents
            for domain in await self._store.close_incidents(
                now, incidents.within, incidents.threshold
            ):
                log.info("incident at %s closed: below the threshold for a whole window", domain)
        records = await run_due_expiries(
            self._store,
            self._client,
            now,
            note_title=policy.settings.note_title,
            metrics=self._metrics,
        )
        if records:
            log.info("expired opt-outs: %s", due_summary(records))

    async def _keep_credentials_alive(self) -> None:
        """Renew the OAuth refresh token before Keap lets it die, even with no event queued."""
        now = self._clock()
        if self._next_keep_alive is not None and now < self._next_keep_alive:
            return
        self._next_keep_alive = now + KEEP_ALIVE_EVERY
        try:
            if await self._client.keep_credentials_alive():
                log.info("renewed the Keap refresh token ahead of its 45-day expiry")
        except ConnectorError as exc:
            log.warning("could not renew the Keap credentials ahead of expiry: %s", exc)

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
        policy = self._policy()
        if policy is not self._pipeline.policy:
            self._pipeline = replace(self._pipeline, policy=policy)
        try:
            finished = await self._pipeline.run(event)
        except ReauthRequiredError as exc:
            return await self._release(event, exc)
        except ConnectorError as exc:
            return await self._fail(event, exc)
        except Exception as exc:  # a bug must cost one attempt, never the worker or the event
            log.exception("event %s: unexpected error", event.id)
            return await self._fail(event, exc)
        await self._store.complete_event(event.id, finished.text)
        self._metrics.events_finished.labels(status="done").inc()
        self._reauth_logged = False
        self.credentials_refused = False
        log.info("event %s done: %s", event.id, finished.text)
        return "done"

    async def _release(self, event: Event, exc: ReauthRequiredError) -> str:
        retry_at = self._clock() + REAUTH_PAUSE
        self._paused_until = retry_at
        self.credentials_refused = True
        await self._store.release_event(event.id, str(exc), retry_at)
        await self._alert(
            Alert(
                AlertKind.REAUTH_REQUIRED,
                "Keap credentials",
                "Keap refused the connector's credentials; bounce events stay queued until "
                f"someone runs `connector auth login` (or fixes KEAP_API_KEY). Keap said: {exc}",
            )
        )
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
            await self._alert(dead_event_alert(event, message))
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

    async def _alert(self, alert: Alert) -> None:
        """Raise an alert into the outbox; a failure to do so is logged, never raised: the
        event's own outcome is already recorded, and the sender does the delivering."""
        try:
            await raise_alert(self._store, alert, self._clock())
        except Exception as exc:  # the worker must not stop for an alert
            log.warning("could not store the %s alert: %s", alert.kind, exc)

    def _backoff(self, attempts: int, exc: BaseException) -> float:
        ceiling = min(self._options.max_backoff, self._options.base_backoff * 2 ** (attempts - 1))
        wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)
        retry_after = getattr(exc, "retry_after", None)
        return max(wait, float(retry_after)) if retry_after else wait


def dead_event_alert(event: Event, error: str) -> Alert:
    """``dead_event``: retries are over; a person looks at it (``connector events retry``)."""
    who = f"contact {event.contact_id}" if event.contact_id else "no contact id"
    text = (
        f"Event {event.id} ({event.bounce_type}, {who}, {event.email or 'no address'}) failed "
        f"after {event.attempts} attempt(s) and will not be retried: {error}. "
        f"`connector events show {event.id}` shows it; `connector events retry {event.id}` "
        "queues it again."
    )
    details = {
        "event": str(event.id),
        "bounce_type": event.bounce_type,
        "contact_id": event.contact_id or "",
        "email": event.email or "",
        "attempts": str(event.attempts),
        "error": error[:500],
    }
    return Alert(AlertKind.DEAD_EVENT, f"event {event.id}", text, details)


async def _first_of(
    stop: asyncio.Event,
    wake: asyncio.Event,
    seconds: float | None,
    inflight: dict[int, asyncio.Task[str]] | None = None,
) -> None:
    """Wait until ``stop`` or ``wake`` is set, an event in flight ends, or ``seconds`` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    running = list((inflight or {}).values())
    await asyncio.wait([*waiters, *running], timeout=seconds, return_when="FIRST_COMPLETED")
    for waiter in waiters:
        waiter.cancel()


def _ended(inflight: dict[int, asyncio.Task[str]], event_id: int, task: asyncio.Task[str]) -> None:
    """An event's slot is free again; a failure the event could not record is logged here (the
    event keeps its lease and is taken again after it)."""
    inflight.pop(event_id, None)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("event %s: its outcome could not be recorded: %s", event_id, exc)
