"""SQLite backend: one writer thread, WAL, ``synchronous=FULL`` and group commit.

Every operation is a function queued to a single thread that owns the connection. The thread
takes everything waiting, runs each operation inside its own savepoint of one transaction, and
commits once: concurrent webhook calls share one fsync instead of paying one each, and no caller
is answered before the commit that holds its write. A failed operation rolls back only its own
savepoint; a failed commit fails every operation of the batch, so nothing is acknowledged that
was not stored.

Other processes (``serve``, ``worker``, ``sync``) open the same file; SQLite's own locking with a
busy timeout serialises them, and OAuth refreshes are serialised with an ``flock`` on a lock file
beside the database.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from connector.errors import StoreUnavailableError
from connector.keap.tokens import OAuthToken
from connector.store.base import (
    AddResult,
    AuditEntry,
    AuditWrite,
    Event,
    EventStatus,
    MigrationState,
    NewEvent,
    QueueStats,
    StepStatus,
    Store,
    StrikeRecord,
)
from connector.store.migrations import MIGRATIONS

T = TypeVar("T")
Clock = Callable[[], float]

_BATCH_LIMIT = 512
_BUSY_TIMEOUT_MS = 15_000
_KEYS_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit
_EVENT_COLUMNS = (
    "id, source, received_at, contact_id, email, bounce_type, keap_count, dedupe_key, raw, "
    "status, attempts, next_attempt_at, last_error, outcome, updated_at"
)
_CONTACT_KEY = "COALESCE(contact_id, lower(email), 'event:' || CAST(id AS TEXT))"


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _event(row: Sequence[Any]) -> Event:
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


_AUDIT_COLUMNS = (
    "id, event_id, contact_id, step, kind, status, before_value, after_value, detail, dry_run, "
    "created_at, updated_at, undone_at"
)


def _audit(row: Sequence[Any]) -> AuditEntry:
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
        undone_at=_dt(row[12]),
    )


@dataclass
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    write: bool
    outcome: tuple[Any, BaseException | None] = field(default=(None, None))


def _unavailable(exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"the SQLite store failed: {exc}")


def _settle_all(settled: list[tuple[_Op, Any, BaseException | None]]) -> None:
    for op, result, error in settled:
        if op.future.done():
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self._path = path
        self._clock = clock
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._lock_path = path.with_name(path.name + ".refresh.lock")
        self._conn = self._connect()
        self._thread = threading.Thread(target=self._serve, name="sqlite-store", daemon=True)
        self._thread.start()

    # --- the writer thread ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            if not self._path.exists():
                self._path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self._path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=15
            )
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(
                f"cannot open the SQLite store {self._path}: {exc}"
            ) from None
        return conn

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._ops.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _BATCH_LIMIT:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._run_batch(batch)
        self._conn.close()

    def _run_batch(self, batch: list[_Op]) -> None:
        """Run the batch in one transaction; isolate operations only when one of them fails.

        The fast path runs every operation bare and commits once. If any raises, the whole
        transaction is rolled back and the batch is run again with a savepoint per operation,
        so the failure is reported to its own caller and the others still commit.
        """
        error = self._attempt(batch, isolate=False)
        if error is None and any(op.outcome[1] is not None for op in batch):
            error = self._attempt(batch, isolate=True)
        self._finish(batch, error)

    def _attempt(self, batch: list[_Op], *, isolate: bool) -> BaseException | None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE" if any(op.write for op in batch) else "BEGIN")
            for op in batch:
                op.outcome = self._run_one(conn, op, isolate)
                if op.outcome[1] is not None and not isolate:
                    conn.execute("ROLLBACK")
                    return None
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return _unavailable(exc)
        return None

    @staticmethod
    def _run_one(
        conn: sqlite3.Connection, op: _Op, isolate: bool
    ) -> tuple[Any, BaseException | None]:
        try:
            if isolate:
                conn.execute("SAVEPOINT op")
            result = op.fn(conn)
            if isolate:
                conn.execute("RELEASE op")
        except Exception as exc:
            if isolate and conn.in_transaction:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            wrapped = _unavailable(exc) if isinstance(exc, sqlite3.OperationalError) else exc
            return None, wrapped
        return result, None

    @staticmethod
    def _finish(batch: list[_Op], batch_error: BaseException | None) -> None:
        """Hand results back with one wake-up per event loop, not one per operation."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, Any, BaseException | None]]] = {}
        for op in batch:
            result, error = op.outcome if batch_error is None else (None, batch_error)
            by_loop.setdefault(op.loop, []).append((op, result, error))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:
                continue

    async def _call(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        if not self._thread.is_alive():
            raise StoreUnavailableError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ops.put(_Op(fn, loop, future, write))
        return await future

    # --- lifecycle and schema ---------------------------------------------------------------

    async def close(self) -> None:
        if self._thread.is_alive():
            self._ops.put(None)
            await asyncio.to_thread(self._thread.join)

    async def migrate(self) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            applied = []
            for migration in MIGRATIONS:
                if migration.name in done:
                    continue
                for statement in migration.statements(self.dialect):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                    (migration.name, self._clock()),
                )
                applied.append(migration.name)
            return applied

        return await self._call(op)

    async def migration_status(self) -> list[MigrationState]:
        def op(conn: sqlite3.Connection) -> dict[str, float]:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
            ).fetchone()
            if not exists:
                return {}
            return dict(conn.execute("SELECT name, applied_at FROM schema_migrations").fetchall())

        applied = await self._call(op, write=False)
        return [MigrationState(m.name, _dt(applied.get(m.name))) for m in MIGRATIONS]

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone(), write=False)

    # --- events -----------------------------------------------------------------------------

    async def add_event(self, event: NewEvent, dedupe_window: timedelta | None) -> AddResult:
        def op(conn: sqlite3.Connection) -> AddResult:
            now = self._clock()
            cutoff = float("-inf") if dedupe_window is None else now - dedupe_window.total_seconds()
            event_id = conn.execute(
                "INSERT INTO events (source, received_at, contact_id, email, bounce_type, "
                "keap_count, dedupe_key, raw, status, attempts, next_attempt_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?) RETURNING id",
                (
                    event.source,
                    now,
                    event.contact_id,
                    event.email,
                    event.bounce_type,
                    event.keap_count,
                    event.dedupe_key,
                    event.raw,
                    now,
                    now,
                ),
            ).fetchone()[0]
            fresh = conn.execute(
                "INSERT INTO dedupe (dedupe_key, window_start, event_id) VALUES (?, ?, ?) "
                "ON CONFLICT (dedupe_key) DO UPDATE SET window_start = excluded.window_start, "
                "event_id = excluded.event_id WHERE dedupe.window_start <= ? RETURNING event_id",
                (event.dedupe_key, now, event_id, cutoff),
            ).fetchone()
            if fresh is not None:
                return AddResult(int(event_id), duplicate=False)
            conn.execute("DELETE FROM events WHERE id = ?", (event_id,))
            row = conn.execute(
                "SELECT event_id FROM dedupe WHERE dedupe_key = ?", (event.dedupe_key,)
            ).fetchone()
            return AddResult(int(row[0]), duplicate=True)

        return await self._call(op)

    async def forget_dedupe(self, keys: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(keys))

        def op(conn: sqlite3.Connection) -> list[str]:
            held: list[str] = []
            for start in range(0, len(wanted), _KEYS_PER_STATEMENT):
                chunk = wanted[start : start + _KEYS_PER_STATEMENT]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"DELETE FROM dedupe WHERE dedupe_key IN ({marks}) RETURNING dedupe_key",  # noqa: S608
                    chunk,
                ).fetchall()
                held += [r[0] for r in rows]
            return held

        return await self._call(op) if wanted else []

    async def claim_events(self, limit: int, lease: timedelta, owner: str) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            now = self._clock()
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT MIN(id) FROM events WHERE ("  # noqa: S608 (constant fragments)
                    "(status IN ('queued', 'failed') AND next_attempt_at <= :now) "
                    "OR (status = 'processing' AND lease_until < :now)) "
                    f"AND {_CONTACT_KEY} NOT IN (SELECT {_CONTACT_KEY} FROM events "
                    "WHERE status = 'processing' AND lease_until >= :now) "
                    f"GROUP BY {_CONTACT_KEY} ORDER BY MIN(id) LIMIT :limit",
                    {"now": now, "limit": limit},
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"UPDATE events SET status = 'processing', attempts = attempts + 1, "  # noqa: S608
                f"lease_until = ?, lease_owner = ?, updated_at = ? WHERE id IN ({marks}) "
                f"RETURNING {_EVENT_COLUMNS}",
                (now + lease.total_seconds(), owner, now, *ids),
            ).fetchall()
            return sorted((_event(row) for row in rows), key=lambda e: e.id)

        return await self._call(op)

    async def renew_leases(
        self, event_ids: Sequence[int], owner: str, lease: timedelta
    ) -> set[int]:
        if not event_ids:
            return set()

        def op(conn: sqlite3.Connection) -> set[int]:
            marks = ",".join("?" * len(event_ids))
            rows = conn.execute(
                f"UPDATE events SET lease_until = ? WHERE id IN ({marks}) "  # noqa: S608
                "AND status = 'processing' AND lease_owner = ? RETURNING id",
                (self._clock() + lease.total_seconds(), *event_ids, owner),
            ).fetchall()
            return {int(row[0]) for row in rows}

        return await self._call(op)

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
        def op(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.execute(
                "UPDATE events SET status = ?, outcome = COALESCE(?, outcome), "
                "last_error = ?, next_attempt_at = ?, lease_until = NULL, lease_owner = NULL, "
                "attempts = MAX(attempts - ?, 0), updated_at = ? WHERE id = ?",
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

        await self._call(op)

    async def requeue(self, event_id: int | None = None, *, failed: bool = False) -> int:
        def op(conn: sqlite3.Connection) -> int:
            now = self._clock()
            sql = (
                "UPDATE events SET status = 'queued', attempts = 0, next_attempt_at = ?, "
                "lease_until = NULL, lease_owner = NULL, updated_at = ? WHERE "
            )
            if event_id is not None:
                cursor = conn.execute(
                    sql + "id = ? AND status IN ('failed', 'dead', 'queued', 'done')",
                    (now, now, event_id),
                )
            elif failed:
                cursor = conn.execute(sql + "status IN ('failed', 'dead')", (now, now))
            else:
                return 0
            return cursor.rowcount

        return await self._call(op)

    async def get_event(self, event_id: int) -> Event | None:
        def op(conn: sqlite3.Connection) -> Event | None:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?",  # noqa: S608
                (event_id,),
            ).fetchone()
            return None if row is None else _event(row)

        return await self._call(op, write=False)

    async def list_events(
        self, status: EventStatus | None = None, limit: int = 100, since: datetime | None = None
    ) -> list[Event]:
        def op(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events "  # noqa: S608
                "WHERE (? IS NULL OR status = ?) AND received_at >= ? ORDER BY id DESC LIMIT ?",
                (
                    status,
                    status,
                    since.timestamp() if since else float("-inf"),
                    limit,
                ),
            ).fetchall()
            return [_event(row) for row in rows]

        return await self._call(op, write=False)

    async def queue_stats(self) -> QueueStats:
        def op(conn: sqlite3.Connection) -> QueueStats:
            counts = dict(
                conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall()
            )
            oldest = conn.execute(
                "SELECT MIN(received_at) FROM events "
                "WHERE status IN ('queued', 'failed', 'processing')"
            ).fetchone()[0]
            age = None if oldest is None else max(0.0, self._clock() - oldest)
            return QueueStats({s.value: counts.get(s.value, 0) for s in EventStatus}, age)

        return await self._call(op, write=False)

    # --- strikes ----------------------------------------------------------------------------

    async def record_strike(
        self, event_id: int, contact_id: str, email: str, bounce_type: str, occurred_at: datetime
    ) -> list[StrikeRecord]:
        address = email.lower()

        def op(conn: sqlite3.Connection) -> list[StrikeRecord]:
            conn.execute(
                "INSERT INTO strikes (event_id, contact_id, email, bounce_type, occurred_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, contact_id, address, bounce_type, occurred_at.timestamp()),
            )
            own = conn.execute("SELECT id FROM strikes WHERE event_id = ?", (event_id,)).fetchone()[
                0
            ]
            rows = conn.execute(
                "SELECT bounce_type, occurred_at FROM strikes "
                "WHERE contact_id = ? AND email = ? AND id < ? ORDER BY id",
                (contact_id, address, own),
            ).fetchall()
            return [StrikeRecord(r[0], datetime.fromtimestamp(r[1], UTC)) for r in rows]

        return await self._call(op)

    async def strikes_for(self, contact_id: str, email: str) -> list[StrikeRecord]:
        def op(conn: sqlite3.Connection) -> list[StrikeRecord]:
            rows = conn.execute(
                "SELECT bounce_type, occurred_at FROM strikes "
                "WHERE contact_id = ? AND email = ? ORDER BY id",
                (contact_id, email.lower()),
            ).fetchall()
            return [StrikeRecord(r[0], datetime.fromtimestamp(r[1], UTC)) for r in rows]

        return await self._call(op, write=False)

    async def struck_address(self, event_id: int) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT email FROM strikes WHERE event_id = ?", (event_id,))
            found = row.fetchone()
            return None if found is None else str(found[0])

        return await self._call(op, write=False)

    # --- audit ------------------------------------------------------------------------------

    async def write_audit(self, entry: AuditWrite) -> AuditEntry:
        def op(conn: sqlite3.Connection) -> AuditEntry:
            now = self._clock()
            row = conn.execute(
                "INSERT INTO audit (event_id, contact_id, step, kind, status, before_value, "  # noqa: S608
                "after_value, detail, dry_run, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, step) DO UPDATE SET status = excluded.status, "
                "before_value = COALESCE(excluded.before_value, audit.before_value), "
                "after_value = COALESCE(excluded.after_value, audit.after_value), "
                "detail = COALESCE(excluded.detail, audit.detail), "
                f"updated_at = excluded.updated_at RETURNING {_AUDIT_COLUMNS}",
                (
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
                ),
            ).fetchone()
            return _audit(row)

        return await self._call(op)

    async def audit_for_event(self, event_id: int) -> list[AuditEntry]:
        def op(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE event_id = ? ORDER BY id",  # noqa: S608
                (event_id,),
            ).fetchall()
            return [_audit(row) for row in rows]

        return await self._call(op, write=False)

    async def list_audit(
        self,
        contact_id: str | None = None,
        limit: int = 200,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        def op(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit "  # noqa: S608
                "WHERE (? IS NULL OR contact_id = ?) AND created_at >= ? "
                "ORDER BY id DESC LIMIT ?",
                (
                    contact_id,
                    contact_id,
                    since.timestamp() if since else float("-inf"),
                    limit,
                ),
            ).fetchall()
            return [_audit(row) for row in rows]

        return await self._call(op, write=False)

    async def get_audit(self, audit_id: int) -> AuditEntry | None:
        def op(conn: sqlite3.Connection) -> AuditEntry | None:
            row = conn.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE id = ?",  # noqa: S608
                (audit_id,),
            ).fetchone()
            return None if row is None else _audit(row)

        return await self._call(op, write=False)

    async def mark_undone(self, audit_id: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE audit SET undone_at = ? WHERE id = ?", (self._clock(), audit_id))

        await self._call(op)

    # --- OAuth tokens -----------------------------------------------------------------------

    async def load_token(self) -> OAuthToken | None:
        def op(conn: sqlite3.Connection) -> OAuthToken | None:
            row = conn.execute(
                "SELECT access_token, refresh_token, expires_at, scope, token_type "
                "FROM oauth_tokens WHERE id = 1"
            ).fetchone()
            if row is None:
                return None
            return OAuthToken(
                access_token=SecretStr(row[0]),
                refresh_token=SecretStr(row[1]),
                expires_at=datetime.fromtimestamp(row[2], UTC),
                scope=row[3],
                token_type=row[4],
            )

        return await self._call(op, write=False)

    async def save_token(self, token: OAuthToken) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO oauth_tokens (id, access_token, refresh_token, expires_at, scope, "
                "token_type, updated_at) VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                "SET access_token = excluded.access_token, refresh_token = excluded.refresh_token, "
                "expires_at = excluded.expires_at, scope = excluded.scope, "
                "token_type = excluded.token_type, updated_at = excluded.updated_at",
                (
                    token.access_token.get_secret_value(),
                    token.refresh_token.get_secret_value(),
                    token.expires_at.timestamp(),
                    token.scope,
                    token.token_type,
                    self._clock(),
                ),
            )

        await self._call(op)

    async def clear_token(self) -> None:
        await self._call(lambda conn: conn.execute("DELETE FROM oauth_tokens"))

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        return self._flock()

    @asynccontextmanager
    async def _flock(self) -> AsyncIterator[None]:
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def save_login_state(self, state: str) -> None:
        await self._put_kv("oauth_login_state", state)

    async def take_login_state(self) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "DELETE FROM kv WHERE name = 'oauth_login_state' RETURNING value"
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._call(op)

    async def _put_kv(self, name: str, value: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (name, value, self._clock()),
            )

        await self._call(op)

    # --- sync checkpoints -------------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT data FROM sync_checkpoints WHERE name = ?", (name,)
            ).fetchone()
            return row[0] if row and row[0] else None

        return await self._call(op, write=False)

    async def save_checkpoint(self, name: str, data: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = self._clock()
            conn.execute(
                "INSERT INTO sync_checkpoints (name, data, heartbeat_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
                "heartbeat_at = excluded.heartbeat_at, updated_at = excluded.updated_at",
                (name, data, now, now),
            )

        await self._call(op)

    async def clear_checkpoint(self, name: str) -> None:
        await self._call(
            lambda conn: conn.execute(
                "UPDATE sync_checkpoints SET data = '' WHERE name = ?", (name,)
            )
        )

    async def acquire_sync(self, name: str, owner: str, stale_after: timedelta) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            row = conn.execute(
                "INSERT INTO sync_checkpoints (name, data, owner, heartbeat_at, updated_at) "
                "VALUES (?, '', ?, ?, ?) ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "heartbeat_at = excluded.heartbeat_at WHERE sync_checkpoints.owner IS NULL "
                "OR sync_checkpoints.owner = excluded.owner "
                "OR sync_checkpoints.heartbeat_at < ? RETURNING name",
                (name, owner, now, now, now - stale_after.total_seconds()),
            ).fetchone()
            return row is not None

        return await self._call(op)

    async def release_sync(self, name: str, owner: str) -> None:
        await self._call(
            lambda conn: conn.execute(
                "UPDATE sync_checkpoints SET owner = NULL WHERE name = ? AND owner = ?",
                (name, owner),
            )
        )

    # --- shared request pacing --------------------------------------------------------------

    async def reserve_send_slots(self, name: str, count: int, interval: float) -> float:
        """One upsert under SQLite's write lock, which every process on the file takes in turn.

        It rides the writer thread's group commit, so a burst of reservations shares one fsync
        with the webhook writes around it.
        """
        span = slot_span(count, interval)

        def op(conn: sqlite3.Connection) -> float:
            now = self._clock()
            row = conn.execute(_RESERVE_SLOTS, (name, now + span, now, span)).fetchone()
            return float(row[0]) - span

        return await self._call(op)


_RESERVE_SLOTS = (
    "INSERT INTO rate_limits (name, next_slot_at, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at, "
    "next_slot_at = MAX(rate_limits.next_slot_at, excluded.updated_at) + ? "
    "RETURNING next_slot_at"
)


def slot_span(count: int, interval: float) -> float:
    """How much of a pacing timeline ``count`` sends take; refuses what cannot be paced."""
    if count < 1 or not interval > 0:
        raise ValueError("reserve at least one slot, a positive interval apart")
    return count * interval


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``, as SQLAlchemy spells them."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError("expected sqlite:///path/to/file.db")
    return Path(rest[1:])
