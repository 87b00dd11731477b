"""The durable store's interface and the records it keeps.

Callers see only this module: events, strike history, the audit log, OAuth tokens and sync
checkpoints, each behind a small set of transactional async methods. Backends (SQLite today,
PostgreSQL) implement ``Store``; nothing outside ``connector/store`` knows which one runs.

The OAuth token record is ``connector.oauth_token.OAuthToken``, shared with ``connector/keap``
without either layer importing the other.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.errors import StoreUnavailableError
from connector.oauth_token import OAuthToken

READINESS_PROBE = "_readiness_probe"
"""The sync checkpoint ``readiness`` writes (empty): a real commit, and no sync's name."""

Clock = Callable[[], float]
"""The store's clock: epoch seconds. Injected so tests can move time by hand."""


class EventStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"


class StepStatus(enum.StrEnum):
    """Where one step of a plan stands; ``pending`` means sent but not confirmed.

    ``skipped`` and ``failed`` say why in the audit row's ``reason``.
    """

    PLANNED = "planned"
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class NewEvent:
    """An event about to be stored: from a webhook callback or a sync finding."""

    source: str
    bounce_type: str
    contact_id: str | None
    email: str | None
    keap_count: int | None
    dedupe_key: str
    raw: str


@dataclass(frozen=True)
class AddResult:
    event_id: int
    duplicate: bool


@dataclass(frozen=True)
class Event:
    id: int
    source: str
    received_at: datetime
    contact_id: str | None
    email: str | None
    bounce_type: str
    keap_count: int | None
    dedupe_key: str
    raw: str
    status: EventStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    outcome: str | None
    updated_at: datetime


@dataclass(frozen=True)
class StrikeRecord:
    bounce_type: str
    occurred_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    event_id: int
    contact_id: str
    step: str
    kind: str
    status: StepStatus
    before_value: str | None
    after_value: str | None
    detail: str | None
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    undone_at: datetime | None
    reason: str | None = None


@dataclass(frozen=True)
class AuditWrite:
    """One step of a plan as the worker records it (insert or update by ``event_id, step``).

    On update, ``before_value``, ``after_value`` and ``detail`` keep their stored value when
    this write gives None; ``reason`` goes with ``status`` and is always replaced (None clears
    it), so a step that was skipped for a reason and later done carries no stale reason.
    """

    event_id: int
    contact_id: str
    step: str
    kind: str
    status: StepStatus
    before_value: str | None = None
    after_value: str | None = None
    detail: str | None = None
    dry_run: bool = False
    reason: str | None = None
    due_at: datetime | None = None  # a follow-up of this step falls due then (``expire``)


@dataclass(frozen=True)
class Incident:
    """An incident at a receiving domain (DESIGN 7a); ``opened_by`` is the event whose bounce
    reached the threshold, ``peak`` the highest count seen, ``bounces`` those counted in it."""

    id: int
    domain: str
    opened_at: datetime
    opened_by: int
    peak: int
    bounces: int
    closed_at: datetime | None

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class IncidentCount:
    """A bounce counted at its domain: the sliding count, and the open incident if any."""

    count: int
    incident: Incident | None


@dataclass(frozen=True)
class QueueStats:
    counts: dict[str, int]
    oldest_queued_age_seconds: float | None


@dataclass(frozen=True)
class NewAlert:
    """An alert about to enter the outbox (``connector.alerts`` builds it)."""

    kind: str
    subject: str
    text: str
    details: Mapping[str, str]
    raised_at: datetime


@dataclass(frozen=True)
class AlertRecord:
    """An alert in the outbox and where its delivery stands.

    ``delivered`` maps each channel that took it (``email``, ``webhook``) to when; ``done_at``
    is set once every channel configured at that attempt took it.
    """

    id: int
    kind: str
    subject: str
    text: str
    details: Mapping[str, str]
    raised_at: datetime
    delivered: Mapping[str, datetime]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    done_at: datetime | None


@dataclass(frozen=True)
class MigrationState:
    name: str
    applied_at: datetime | None


class Store(abc.ABC):
    """Everything the connector keeps. Every method is one transaction."""

    dialect: str

    # --- lifecycle and schema ---------------------------------------------------------------

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    @abc.abstractmethod
    async def migration_status(self) -> list[MigrationState]: ...

    async def pending_migrations(self) -> list[str]:
        return [m.name for m in await self.migration_status() if m.applied_at is None]

    @abc.abstractmethod
    async def is_empty(self) -> bool:
        """True when the store holds no tables at all: a brand-new SQLite file, or an empty
        (or not yet existing) PostgreSQL schema. Only such a store is created without asking."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailableError`` unless the store answers a trivial query."""

    async def readiness(self) -> tuple[str, str] | None:
        """Why this store cannot take a callback now, or None (DESIGN 6, ``/readyz``).

        Ready means: the database is the one this process opened (the same SQLite file, the
        same PostgreSQL database and schema), it answers, and it takes a committed write (a
        full disk, a read-only file or server fail here). Returns ``(reason, detail)``: the
        reason is fixed words that name no host, port, path or database and may be shown to
        anyone; the detail is for the log.
        """
        problem = await self._identity_problem()
        if problem is not None:
            return "not the database this process opened", problem
        try:
            await self.ping()
        except StoreUnavailableError as exc:
            return "not reachable", str(exc)
        try:
            await self.save_checkpoint(READINESS_PROBE, "")
        except StoreUnavailableError as exc:
            return "not writable", str(exc)
        return None

    async def _identity_problem(self) -> str | None:
        """What says the database is no longer the one opened; backends that can tell, do."""
        return None

    # --- events -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_event(self, event: NewEvent, dedupe_window: timedelta | None) -> AddResult:
        """Store an event durably, unless its dedupe key was seen inside the window.

        Returns only after the write is committed and synced, so a caller may acknowledge it.
        ``dedupe_window=None`` means the key is unique forever (sync status episodes).
        """

    @abc.abstractmethod
    async def forget_dedupe(self, keys: Sequence[str]) -> list[str]:
        """Drop these dedupe keys so the next event with one is stored again; return those held.

        Sync uses it to end a status episode: once an address is seen out of the bounce status,
        a later bounce is a new episode and must be counted. Events already stored stay as
        they are; only the "seen before" memory goes.
        """

    @abc.abstractmethod
    async def claim_events(self, limit: int, lease: timedelta, owner: str) -> list[Event]:
        """Take up to ``limit`` due events for processing, at most one per contact at a time.

        An event whose lease ran out (its worker died) is due again.
        """

    @abc.abstractmethod
    async def renew_leases(
        self, event_ids: Sequence[int], owner: str, lease: timedelta
    ) -> set[int]:
        """Extend the leases ``owner`` still holds on these events; return the ids it holds.

        A worker renews while it works, so an event that takes longer than one lease (Keap
        slow or throttling, retries) is not taken by another worker meanwhile. An id missing
        from the answer was taken over: its worker must stop acting on it.
        """

    async def complete_event(self, event_id: int, outcome: str) -> None:
        await self._set_status(event_id, EventStatus.DONE, outcome=outcome)

    async def fail_event(self, event_id: int, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt; ``retry_at=None`` marks the event dead."""
        status = EventStatus.DEAD if retry_at is None else EventStatus.FAILED
        await self._set_status(event_id, status, error=error, retry_at=retry_at)

    async def release_event(self, event_id: int, error: str, retry_at: datetime) -> None:
        """Put a claimed event back in the queue without counting the attempt (re-auth)."""
        await self._set_status(
            event_id, EventStatus.QUEUED, error=error, retry_at=retry_at, refund=True
        )

    @abc.abstractmethod
    async def _set_status(
        self,
        event_id: int,
        status: EventStatus,
        *,
        outcome: str | None = None,
        error: str | None = None,
        retry_at: datetime | None = None,
        refund: bool = False,
    ) -> None:
        """End a claim: new status, clear the lease, keep ``outcome``/``error``, due ``retry_at``
        (now when None); ``refund`` gives the attempt back."""

    @abc.abstractmethod
    async def requeue(self, event_id: int | None = None, *, failed: bool = False) -> int:
        """Queue one event, or every failed and dead one, for another try; return how many."""

    @abc.abstractmethod
    async def get_event(self, event_id: int) -> Event | None: ...

    @abc.abstractmethod
    async def list_events(
        self, status: EventStatus | None = None, limit: int = 100, since: datetime | None = None
    ) -> list[Event]: ...

    @abc.abstractmethod
    async def queue_stats(self) -> QueueStats: ...

    # --- incidents and steps falling due (connector.store.followups) -------------------------

    @abc.abstractmethod
    async def count_incident_bounce(
        self,
        event_id: int,
        domain: str,
        bounce_type: str,
        at: datetime,
        within: timedelta,
        threshold: int,
    ) -> IncidentCount:
        """Count this event's bounce at ``domain`` once (idempotent), close the domain's
        incident if it has been below ``threshold`` for ``within``, open one if the count inside
        ``within`` up to ``at`` reaches it; the count and the domain's open incident."""

    @abc.abstractmethod
    async def close_incidents(self, now: datetime, within: timedelta, threshold: int) -> list[str]:
        """Close every incident below ``threshold`` for ``within``; the domains closed."""

    @abc.abstractmethod
    async def list_incidents(self, since: datetime) -> list[Incident]:
        """Open incidents and those opened or closed since ``since``, newest first."""

    @abc.abstractmethod
    async def due_audit(self, now: datetime, limit: int = 100) -> list[AuditEntry]:
        """Done steps whose follow-up is due by ``now`` (not undone, not dry runs)."""

    @abc.abstractmethod
    async def claim_due(self, audit_id: int, now: datetime, until: datetime) -> bool:
        """Take a due step's follow-up until ``until``; False when another took it first."""

    @abc.abstractmethod
    async def clear_due(self, audit_id: int) -> None:
        """The follow-up is settled: it never falls due again."""

    # --- strikes ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def record_strike(
        self, event_id: int, contact_id: str, email: str, bounce_type: str, occurred_at: datetime
    ) -> list[StrikeRecord]:
        """Count this event once (idempotent) and return the address's earlier strikes.

        "Earlier" is the order strikes were first recorded, so a re-run of the same event sees
        the same history it saw the first time.
        """

    @abc.abstractmethod
    async def strikes_for(self, contact_id: str, email: str) -> list[StrikeRecord]: ...

    @abc.abstractmethod
    async def struck_address(self, event_id: int) -> str | None:
        """The address an earlier attempt of this event counted its strike against.

        A retry must act on that address again, even when the contact it re-reads no longer
        holds it (the first attempt blanked it): picking afresh could hit a healthy address.
        """

    # --- audit ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def write_audit(self, entry: AuditWrite) -> AuditEntry: ...

    @abc.abstractmethod
    async def audit_for_event(self, event_id: int) -> list[AuditEntry]: ...

    @abc.abstractmethod
    async def list_audit(
        self,
        contact_id: str | None = None,
        limit: int = 200,
        since: datetime | None = None,
    ) -> list[AuditEntry]: ...

    @abc.abstractmethod
    async def get_audit(self, audit_id: int) -> AuditEntry | None: ...

    @abc.abstractmethod
    async def mark_undone(self, audit_id: int) -> None: ...

    # --- OAuth tokens (the TokenStore protocol) ---------------------------------------------

    @abc.abstractmethod
    async def load_token(self) -> OAuthToken | None: ...

    @abc.abstractmethod
    async def save_token(self, token: OAuthToken) -> None: ...

    @abc.abstractmethod
    async def clear_token(self) -> None: ...

    @abc.abstractmethod
    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        """Serialises OAuth refreshes across every process sharing this store."""

    @abc.abstractmethod
    async def save_login_state(self, state: str) -> None: ...

    @abc.abstractmethod
    async def take_login_state(self) -> str | None: ...

    # --- sync checkpoints -------------------------------------------------------------------

    @abc.abstractmethod
    async def load_checkpoint(self, name: str) -> str | None: ...

    @abc.abstractmethod
    async def save_checkpoint(self, name: str, data: str) -> None: ...

    @abc.abstractmethod
    async def clear_checkpoint(self, name: str) -> None: ...

    @abc.abstractmethod
    async def acquire_sync(self, name: str, owner: str, stale_after: timedelta) -> bool:
        """Claim the right to run sync ``name``; False if another live run holds it."""

    @abc.abstractmethod
    async def release_sync(self, name: str, owner: str) -> None: ...

    # --- the alert outbox (DESIGN 7a) -------------------------------------------------------

    @abc.abstractmethod
    async def add_alert(self, alert: NewAlert, window: timedelta) -> int | None:
        """Store ``alert`` in the outbox unless the same kind and subject was stored less than
        ``window`` before ``alert.raised_at``; return its id, or None when it was not stored.

        One transaction, decided inside the database, so replicas raising the same alert at
        the same moment store it once.
        """

    @abc.abstractmethod
    async def claim_alerts(
        self, limit: int, lease: timedelta, owner: str, now: datetime, raised_since: datetime
    ) -> list[AlertRecord]:
        """Take up to ``limit`` undelivered alerts that are due at ``now`` (raised at or after
        ``raised_since``) for one delivery attempt; an alert is held by one sender at a time."""

    @abc.abstractmethod
    async def finish_alert(
        self,
        alert_id: int,
        owner: str,
        now: datetime,
        delivered: Mapping[str, datetime],
        error: str | None,
        retry_at: datetime | None,
    ) -> bool:
        """End an attempt: record the channels that have taken the alert so far and the last
        error; ``retry_at=None`` marks it delivered. False when ``owner`` no longer held it."""

    @abc.abstractmethod
    async def list_alerts(self, limit: int = 50) -> list[AlertRecord]:
        """The most recent alerts first."""

    # --- shared request pacing --------------------------------------------------------------

    @abc.abstractmethod
    async def reserve_send_slots(self, name: str, count: int, interval: float) -> float:
        """Reserve ``count`` send times ``interval`` seconds apart on the timeline ``name``.

        Returns the first reserved time (epoch seconds by the store's clock); the others follow
        at ``interval`` steps. Every process sharing the store draws from the same timeline in
        one atomic statement, so together they never send faster than one per ``interval``:
        this is how replicas share Keap's per-client rate limit. A timeline left idle starts
        again from now; the unused past is never lent out as a burst.
        """
