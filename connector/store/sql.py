"""What the SQLite and PostgreSQL backends share: statements, row mappers and the simple methods.

Shared statements are written once, in SQLite's ``?`` placeholder style and with PostgreSQL's
``GREATEST``; ``for_dialect`` spells them for the backend that runs them (``%s`` for psycopg,
``MAX`` for SQLite). Both dialects read the rest the same way: ``CAST(? AS TEXT)`` types a
parameter that may be NULL, ``ON CONFLICT ... DO UPDATE`` and ``RETURNING`` exist in both.

``SQLStore`` implements every ``Store`` method that is one shared statement on top of three
primitives each backend provides (``_one``, ``_all``, ``_run``), so each backend keeps only
what really differs: how it runs a statement, group commit of ``add_event``, claiming, strike
locking, migrations, the refresh lock and the emptiness check.

Over 400 lines because it is one list: every shared statement sits next to the one method that
runs it, and splitting statements from methods would only make each harder to check.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, LiteralString

from pydantic import SecretStr

from connector.oauth_token import OAuthToken
from connector.store.base import (
    AlertRecord,
    AuditEntry,
    AuditWrite,
    Clock,
    Event,
    EventStatus,
    MigrationState,
    NewAlert,
    QueueStats,
    StepStatus,
    Store,
    StrikeRecord,
)
from connector.store.followups import FollowUps
from connector.store.migrations import MIGRATIONS

Row = Sequence[Any]

__all__ = ["Clock", "Row", "SQLStore"]

# --- columns and fragments ---------------------------------------------------------------------

EVENT_COLUMNS: LiteralString = (
    "id, source, received_at, contact_id, email, bounce_type, keap_count, dedupe_key, raw, "
    "status, attempts, next_attempt_at, last_error, outcome, updated_at"
)
AUDIT_COLUMNS: LiteralString = (
    "id, event_id, contact_id, step, kind, status, before_value, after_value, detail, dry_run, "
    "created_at, updated_at, undone_at, reason"
)
# The key that keeps one contact to one worker; an event without a contact is its own key.
CONTACT_KEY: LiteralString = "COALESCE(contact_id, lower(email), 'event:' || CAST(id AS TEXT))"

# --- statements (``?`` style; see ``for_dialect``) ---------------------------------------------

SELECT_EVENTS: LiteralString = "SELECT " + EVENT_COLUMNS + " FROM events "  # noqa: S608
SELECT_AUDIT: LiteralString = "SELECT " + AUDIT_COLUMNS + " FROM audit "  # noqa: S608

GET_EVENT: LiteralString = SELECT_EVENTS + "WHERE id = ?"
LIST_EVENTS: LiteralString = (
    SELECT_EVENTS + "WHERE (CAST(? AS TEXT) IS NULL OR status = CAST(? AS TEXT)) "
    "AND received_at >= ? ORDER BY id DESC LIMIT ?"
)
SET_STATUS: LiteralString = (
    "UPDATE events SET status = ?, outcome = COALESCE(?, outcome), "
    "last_error = ?, next_attempt_at = ?, lease_until = NULL, lease_owner = NULL, "
    "attempts = GREATEST(attempts - ?, 0), updated_at = ? WHERE id = ?"
)
_REQUEUE: LiteralString = (
    "UPDATE events SET status = 'queued', attempts = 0, next_attempt_at = ?, "
    "lease_until = NULL, lease_owner = NULL, updated_at = ? WHERE "
)
REQUEUE_ONE: LiteralString = _REQUEUE + "id = ? AND status IN ('failed', 'dead', 'queued', 'done')"
REQUEUE_FAILED: LiteralString = _REQUEUE + "status IN ('failed', 'dead')"
# Counts and the oldest waiting event from one statement, so from one snapshot.
QUEUE_STATS: LiteralString = "SELECT status, COUNT(*), MIN(received_at) FROM events GROUP BY status"

INSERT_STRIKE: LiteralString = (
    "INSERT INTO strikes (event_id, contact_id, email, bounce_type, occurred_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
EARLIER_STRIKES: LiteralString = (
    "SELECT bounce_type, occurred_at FROM strikes WHERE contact_id = ? "
    "AND email = ? AND id < (SELECT id FROM strikes WHERE event_id = ?) ORDER BY id"
)
STRIKES_FOR: LiteralString = (
    "SELECT bounce_type, occurred_at FROM strikes WHERE contact_id = ? AND email = ? ORDER BY id"
)
STRUCK_ADDRESS: LiteralString = "SELECT email FROM strikes WHERE event_id = ?"

AUDIT_UPSERT: LiteralString = (
    "INSERT INTO audit (event_id, contact_id, step, kind, status, before_value, "
    "after_value, detail, dry_run, created_at, updated_at, reason, due_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (event_id, step) DO UPDATE SET status = excluded.status, "
    "before_value = COALESCE(excluded.before_value, audit.before_value), "
    "after_value = COALESCE(excluded.after_value, audit.after_value), "
    "detail = COALESCE(excluded.detail, audit.detail), reason = excluded.reason, "
    "due_at = COALESCE(excluded.due_at, audit.due_at), "
    "updated_at = excluded.updated_at RETURNING " + AUDIT_COLUMNS
)
AUDIT_FOR_EVENT: LiteralString = SELECT_AUDIT + "WHERE event_id = ? ORDER BY id"
LIST_AUDIT: LiteralString = (
    SELECT_AUDIT + "WHERE (CAST(? AS TEXT) IS NULL OR contact_id = CAST(? AS TEXT)) "
    "AND created_at >= ? ORDER BY id DESC LIMIT ?"
)
GET_AUDIT: LiteralString = SELECT_AUDIT + "WHERE id = ?"
MARK_UNDONE: LiteralString = "UPDATE audit SET undone_at = ? WHERE id = ?"

LOAD_TOKEN: LiteralString = (
    "SELECT access_token, refresh_token, expires_at, scope, token_type, updated_at "
    "FROM oauth_tokens WHERE id = 1"
)
SAVE_TOKEN: LiteralString = (
    "INSERT INTO oauth_tokens (id, access_token, refresh_token, expires_at, scope, "
    "token_type, updated_at) VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
    "SET access_token = excluded.access_token, refresh_token = excluded.refresh_token, "
    "expires_at = excluded.expires_at, scope = excluded.scope, "
    "token_type = excluded.token_type, updated_at = excluded.updated_at"
)
CLEAR_TOKEN: LiteralString = "DELETE FROM oauth_tokens"
PUT_KV: LiteralString = (
    "INSERT INTO kv (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
TAKE_KV: LiteralString = "DELETE FROM kv WHERE name = ? RETURNING value"

LOAD_CHECKPOINT: LiteralString = "SELECT data FROM sync_checkpoints WHERE name = ?"
SAVE_CHECKPOINT: LiteralString = (
    "INSERT INTO sync_checkpoints (name, data, heartbeat_at, updated_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
    "heartbeat_at = excluded.heartbeat_at, updated_at = excluded.updated_at"
)
CLEAR_CHECKPOINT: LiteralString = "UPDATE sync_checkpoints SET data = '' WHERE name = ?"
# A second run starting at the same moment waits on the row lock, then sees a live owner that
# is not itself and gets no row back.
ACQUIRE_SYNC: LiteralString = (
    "INSERT INTO sync_checkpoints (name, data, owner, heartbeat_at, updated_at) "
    "VALUES (?, '', ?, ?, ?) ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
    "heartbeat_at = excluded.heartbeat_at WHERE sync_checkpoints.owner IS NULL "
    "OR sync_checkpoints.owner = excluded.owner "
    "OR sync_checkpoints.heartbeat_at < ? RETURNING name"
)
RELEASE_SYNC: LiteralString = (
    "UPDATE sync_checkpoints SET owner = NULL WHERE name = ? AND owner = ?"
)
# ``ON CONFLICT DO UPDATE`` locks the timeline's row and computes from its latest committed
# version, so concurrent reservers queue on that lock and each gets the span after the last.
RESERVE_SLOTS: LiteralString = (
    "INSERT INTO rate_limits (name, next_slot_at, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at, "
    "next_slot_at = GREATEST(rate_limits.next_slot_at, excluded.updated_at) + ? "
    "RETURNING next_slot_at"
)

ALERT_COLUMNS: LiteralString = (
    "id, kind, subject, text, details, raised_at, delivered, attempts, next_attempt_at, "
    "last_error, done_at"
)
# Claims the kind and subject for this raise: a row comes back only when the key is new or its
# last raise is at least the window old (the conflicting row is locked and re-read, so two
# replicas raising together cannot both get one). Run with INSERT_ALERT in one transaction.
CLAIM_ALERT_KEY: LiteralString = (
    "INSERT INTO alert_keys (kind, subject, raised_at) VALUES (?, ?, ?) "
    "ON CONFLICT (kind, subject) DO UPDATE SET raised_at = excluded.raised_at "
    "WHERE alert_keys.raised_at <= ? RETURNING kind"
)
INSERT_ALERT: LiteralString = (
    "INSERT INTO alerts (kind, subject, text, details, raised_at, delivered, attempts, "
    "next_attempt_at) VALUES (?, ?, ?, ?, ?, '{}', 0, ?) RETURNING id"
)
# The lease condition is repeated on the updated rows, so a row another sender claimed between
# the subquery's snapshot and the row lock (PostgreSQL) is re-checked and left alone.
CLAIM_ALERTS: LiteralString = (
    "UPDATE alerts SET lease_until = ?, lease_owner = ?, attempts = attempts + 1 "  # noqa: S608
    "WHERE id IN (SELECT id FROM alerts WHERE done_at IS NULL AND next_attempt_at <= ? "
    "AND raised_at >= ? AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?) "
    "AND done_at IS NULL AND (lease_until IS NULL OR lease_until < ?) "
    "RETURNING " + ALERT_COLUMNS
)
FINISH_ALERT: LiteralString = (
    "UPDATE alerts SET delivered = ?, last_error = ?, next_attempt_at = ?, done_at = ?, "
    "lease_until = NULL, lease_owner = NULL WHERE id = ? AND lease_owner = ?"
)
LIST_ALERTS: LiteralString = (
    "SELECT " + ALERT_COLUMNS + " FROM alerts ORDER BY id DESC LIMIT ?"  # noqa: S608
)

SCHEMA_MIGRATIONS_TABLE: LiteralString = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(name TEXT PRIMARY KEY, applied_at {real} NOT NULL)"
)
APPLIED_MIGRATIONS: LiteralString = "SELECT name, applied_at FROM schema_migrations"
RECORD_MIGRATION: LiteralString = "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)"

_LOGIN_STATE = "oauth_login_state"


@lru_cache(maxsize=512)
def for_dialect(statement: LiteralString, dialect: str) -> LiteralString:
    """``statement`` as ``dialect`` spells it; a backend's own statements pass unchanged.

    PostgreSQL (psycopg) takes ``%s`` placeholders; SQLite's scalar maximum is ``MAX``.
    """
    if dialect == "postgresql":
        return statement.replace("?", "%s")
    return statement.replace("GREATEST(", "MAX(")


def schema_migrations_table(dialect: str) -> LiteralString:
    real: LiteralString = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    return SCHEMA_MIGRATIONS_TABLE.format(real=real)


# --- row mappers and parameters ----------------------------------------------------------------


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def event_from_row(row: Row) -> Event:
    return Event(
        id=row[0],
        source=row[1],
        received_at=datetime.fromtimestamp(row[2], UTC),
        contact_id=row[3],
        email=row[4],
        bounce_type=row[5],
        keap_count=row[6],
        dedupe_key=row[7],
        raw=row[8],
        status=EventStatus(row[9]),
        attempts=row[10],
        next_attempt_at=datetime.fromtimestamp(row[11], UTC),
        last_error=row[12],
        outcome=row[13],
        updated_at=datetime.fromtimestamp(row[14], UTC),
    )


def audit_from_row(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row[0],
        event_id=row[1],
        contact_id=row[2],
        step=row[3],
        kind=row[4],
        status=StepStatus(row[5]),
        before_value=row[6],
        after_value=row[7],
        detail=row[8],
        dry_run=bool(row[9]),
        created_at=datetime.fromtimestamp(row[10], UTC),
        updated_at=datetime.fromtimestamp(row[11], UTC),
        undone_at=dt(row[12]),
        reason=row[13],
    )


def audit_params(entry: AuditWrite, now: float) -> tuple[Any, ...]:
    return (
        entry.event_id,
        entry.contact_id,
        entry.step,
        entry.kind,
        entry.status.value,
        entry.before_value,
        entry.after_value,
        entry.detail,
        int(entry.dry_run),
        now,
        now,
        entry.reason,
        None if entry.due_at is None else entry.due_at.timestamp(),
    )


def strikes_from_rows(rows: Sequence[Row]) -> list[StrikeRecord]:
    return [StrikeRecord(r[0], datetime.fromtimestamp(r[1], UTC)) for r in rows]


def token_from_row(row: Row) -> OAuthToken:
    return OAuthToken(
        access_token=SecretStr(row[0]),
        refresh_token=SecretStr(row[1]),
        expires_at=datetime.fromtimestamp(row[2], UTC),
        scope=row[3],
        token_type=row[4],
        issued_at=datetime.fromtimestamp(row[5], UTC),
    )


def token_params(token: OAuthToken, now: float) -> tuple[Any, ...]:
    return (
        token.access_token.get_secret_value(),
        token.refresh_token.get_secret_value(),
        token.expires_at.timestamp(),
        token.scope,
        token.token_type,
        token.issued_at.timestamp() if token.issued_at is not None else now,
    )


def alert_from_row(row: Row) -> AlertRecord:
    details = json.loads(row[4])
    delivered = json.loads(row[6])
    return AlertRecord(
        id=row[0],
        kind=row[1],
        subject=row[2],
        text=row[3],
        details={str(k): str(v) for k, v in details.items()},
        raised_at=datetime.fromtimestamp(row[5], UTC),
        delivered={str(k): datetime.fromtimestamp(v, UTC) for k, v in delivered.items()},
        attempts=int(row[7]),
        next_attempt_at=datetime.fromtimestamp(row[8], UTC),
        last_error=row[9],
        done_at=dt(row[10]),
    )


def alert_key_params(alert: NewAlert, window: timedelta) -> tuple[Any, ...]:
    raised = alert.raised_at.timestamp()
    return (alert.kind, alert.subject, raised, raised - window.total_seconds())


def alert_params(alert: NewAlert) -> tuple[Any, ...]:
    raised = alert.raised_at.timestamp()
    details = json.dumps(dict(alert.details), ensure_ascii=False, sort_keys=True)
    return (alert.kind, alert.subject, alert.text, details, raised, raised)


def queue_stats_from_rows(rows: Sequence[Row], now: float) -> QueueStats:
    counts = {row[0]: int(row[1]) for row in rows}
    waiting = [row[2] for row in rows if row[0] in ("queued", "failed", "processing")]
    age = None if not waiting else max(0.0, now - min(waiting))
    return QueueStats({s.value: counts.get(s.value, 0) for s in EventStatus}, age)


def migration_states(applied: Mapping[str, float]) -> list[MigrationState]:
    return [MigrationState(m.name, dt(applied.get(m.name))) for m in MIGRATIONS]


def slot_span(count: int, interval: float) -> float:
    """How much of a pacing timeline ``count`` sends take; refuses what cannot be paced."""
    if count < 1 or not interval > 0:
        raise ValueError("reserve at least one slot, a positive interval apart")
    return count * interval


def _since(since: datetime | None) -> float:
    return since.timestamp() if since else float("-inf")


# --- the methods that are one shared statement -------------------------------------------------


class SQLStore(FollowUps, Store):
    """``Store`` methods both backends run the same way; each is one statement, so one
    transaction on either backend.

    A backend gives the primitives below. Each passes its statement through ``for_dialect``,
    runs it as one transaction, and turns driver failures into ``StoreUnavailableError``.
    ``write=False`` tells a backend that cares (SQLite) that the statement only reads.
    """

    _clock: Clock

    @abc.abstractmethod
    async def _one(
        self, query: LiteralString, params: Sequence[Any] = (), *, write: bool = True
    ) -> Row | None: ...

    @abc.abstractmethod
    async def _all(
        self, query: LiteralString, params: Sequence[Any] = (), *, write: bool = True
    ) -> Sequence[Row]: ...

    @abc.abstractmethod
    async def _run(self, query: LiteralString, params: Sequence[Any] = ()) -> int:
        """Run a write; return the number of rows it changed."""

    def _audit_row(self, row: Row) -> AuditEntry:
        return audit_from_row(row)

    # --- events -----------------------------------------------------------------------------

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
        now = self._clock()
        await self._run(
            SET_STATUS,
            (
                status.value,
                outcome,
                error,
                now if retry_at is None else retry_at.timestamp(),
                1 if refund else 0,
                now,
                event_id,
            ),
        )

    async def requeue(self, event_id: int | None = None, *, failed: bool = False) -> int:
        now = self._clock()
        if event_id is not None:
            return await self._run(REQUEUE_ONE, (now, now, event_id))
        if failed:
            return await self._run(REQUEUE_FAILED, (now, now))
        return 0

    async def get_event(self, event_id: int) -> Event | None:
        row = await self._one(GET_EVENT, (event_id,), write=False)
        return None if row is None else event_from_row(row)

    async def list_events(
        self, status: EventStatus | None = None, limit: int = 100, since: datetime | None = None
    ) -> list[Event]:
        value = None if status is None else status.value
        rows = await self._all(LIST_EVENTS, (value, value, _since(since), limit), write=False)
        return [event_from_row(row) for row in rows]

    async def queue_stats(self) -> QueueStats:
        rows = await self._all(QUEUE_STATS, write=False)
        return queue_stats_from_rows(rows, self._clock())

    # --- strikes ----------------------------------------------------------------------------

    async def strikes_for(self, contact_id: str, email: str) -> list[StrikeRecord]:
        rows = await self._all(STRIKES_FOR, (contact_id, email.lower()), write=False)
        return strikes_from_rows(rows)

    async def struck_address(self, event_id: int) -> str | None:
        row = await self._one(STRUCK_ADDRESS, (event_id,), write=False)
        return None if row is None else str(row[0])

    # --- audit ------------------------------------------------------------------------------

    async def write_audit(self, entry: AuditWrite) -> AuditEntry:
        row = await self._one(AUDIT_UPSERT, audit_params(entry, self._clock()))
        assert row is not None, "an upsert without a condition always returns its row"
        return audit_from_row(row)

    async def audit_for_event(self, event_id: int) -> list[AuditEntry]:
        rows = await self._all(AUDIT_FOR_EVENT, (event_id,), write=False)
        return [audit_from_row(row) for row in rows]

    async def list_audit(
        self,
        contact_id: str | None = None,
        limit: int = 200,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        rows = await self._all(
            LIST_AUDIT, (contact_id, contact_id, _since(since), limit), write=False
        )
        return [audit_from_row(row) for row in rows]

    async def get_audit(self, audit_id: int) -> AuditEntry | None:
        row = await self._one(GET_AUDIT, (audit_id,), write=False)
        return None if row is None else audit_from_row(row)

    async def mark_undone(self, audit_id: int) -> None:
        await self._run(MARK_UNDONE, (self._clock(), audit_id))

    # --- OAuth tokens -----------------------------------------------------------------------

    async def load_token(self) -> OAuthToken | None:
        row = await self._one(LOAD_TOKEN, write=False)
        return None if row is None else token_from_row(row)

    async def save_token(self, token: OAuthToken) -> None:
        await self._run(SAVE_TOKEN, token_params(token, self._clock()))

    async def clear_token(self) -> None:
        await self._run(CLEAR_TOKEN)

    async def save_login_state(self, state: str) -> None:
        await self._run(PUT_KV, (_LOGIN_STATE, state, self._clock()))

    async def take_login_state(self) -> str | None:
        row = await self._one(TAKE_KV, (_LOGIN_STATE,))
        return None if row is None else str(row[0])

    # --- sync checkpoints -------------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> str | None:
        row = await self._one(LOAD_CHECKPOINT, (name,), write=False)
        return str(row[0]) if row and row[0] else None

    async def save_checkpoint(self, name: str, data: str) -> None:
        now = self._clock()
        await self._run(SAVE_CHECKPOINT, (name, data, now, now))

    async def clear_checkpoint(self, name: str) -> None:
        await self._run(CLEAR_CHECKPOINT, (name,))

    async def acquire_sync(self, name: str, owner: str, stale_after: timedelta) -> bool:
        now = self._clock()
        row = await self._one(
            ACQUIRE_SYNC, (name, owner, now, now, now - stale_after.total_seconds())
        )
        return row is not None

    async def release_sync(self, name: str, owner: str) -> None:
        await self._run(RELEASE_SYNC, (name, owner))

    # --- the alert outbox (``add_alert`` is per backend: two statements, one transaction) ----

    async def claim_alerts(
        self, limit: int, lease: timedelta, owner: str, now: datetime, raised_since: datetime
    ) -> list[AlertRecord]:
        at = now.timestamp()
        rows = await self._all(
            CLAIM_ALERTS,
            (at + lease.total_seconds(), owner, at, raised_since.timestamp(), at, limit, at),
        )
        return sorted((alert_from_row(row) for row in rows), key=lambda a: a.id)

    async def finish_alert(
        self,
        alert_id: int,
        owner: str,
        now: datetime,
        delivered: Mapping[str, datetime],
        error: str | None,
        retry_at: datetime | None,
    ) -> bool:
        taken = json.dumps({k: v.timestamp() for k, v in sorted(delivered.items())})
        at = now.timestamp()
        done = at if retry_at is None else None
        due = at if retry_at is None else retry_at.timestamp()
        changed = await self._run(FINISH_ALERT, (taken, error, due, done, alert_id, owner))
        return changed > 0

    async def list_alerts(self, limit: int = 50) -> list[AlertRecord]:
        rows = await self._all(LIST_ALERTS, (limit,), write=False)
        return [alert_from_row(row) for row in rows]

    # --- shared request pacing --------------------------------------------------------------

    async def reserve_send_slots(self, name: str, count: int, interval: float) -> float:
        """One upsert, so one round trip (or one group-committed operation) and one short row
        lock per batch of slots; no advisory lock or read-then-write is needed."""
        span = slot_span(count, interval)
        now = self._clock()
        row = await self._one(RESERVE_SLOTS, (name, now + span, now, span))
        assert row is not None, "an upsert without a condition always returns its row"
        return float(row[0]) - span
