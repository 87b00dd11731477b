"""SQLite backend: one writer thread, WAL, ``synchronous=FULL`` and group commit.

Every operation is a function queued to a single thread that owns the connection. The thread
takes everything waiting, runs each operation inside its own savepoint of one transaction, and
commits once: concurrent webhook calls share one fsync instead of paying one each, and no caller
is answered before the commit that holds its write. A failed operation rolls back only its own
savepoint; a failed commit fails every operation of the batch, so nothing is acknowledged that
was not stored.

The file is the store only while it is the file at the configured path: one deleted, moved or
replaced under a running process (a restore, a clean-up script) would take every later write
with it, acknowledged and then gone at the next start. So before and after every batch the writer
thread compares the path's ``(st_dev, st_ino)`` with the file it opened (one ``stat``, about a
microsecond, against the batch's fsync): when they differ the batch fails as unavailable (the
webhook answers 503, ``/readyz`` fails), an error is logged once, and the store works again
if the same file comes back.

Other processes (``serve``, ``worker``, ``sync``) open the same file; SQLite's own locking with a
busy timeout serialises them, and OAuth refreshes are serialised with an ``flock`` on a lock file
beside the database.

The statements and methods both backends share are in ``sql.py``; what is left here is the
writer thread, the few operations of several statements, and SQLite's own lock file.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString, TypeVar

from connector.errors import StoreUnavailableError
from connector.store.base import (
    AddResult,
    Event,
    MigrationState,
    NewAlert,
    NewEvent,
    StrikeRecord,
)
from connector.store.migrations import MIGRATIONS
from connector.store.sql import (
    APPLIED_MIGRATIONS,
    CLAIM_ALERT_KEY,
    CONTACT_KEY,
    EARLIER_STRIKES,
    EVENT_COLUMNS,
    INSERT_ALERT,
    INSERT_STRIKE,
    RECORD_MIGRATION,
    Clock,
    Row,
    SQLStore,
    alert_key_params,
    alert_params,
    event_from_row,
    for_dialect,
    migration_states,
    schema_migrations_table,
    strikes_from_rows,
)

__all__ = ["Clock", "SQLiteStore", "sqlite_path"]

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]

log = logging.getLogger("connector.store")

_BATCH_LIMIT = 512
_BUSY_TIMEOUT_MS = 15_000
_KEYS_PER_STATEMENT = 500  # well under SQLite's bound-parameter limit


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


class SQLiteStore(SQLStore):
    dialect = "sqlite"

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self._path = path
        self._clock = clock
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._lock_path = path.with_name(path.name + ".refresh.lock")
        self._conn = self._connect()
        self._identity = self._file_identity()
        self._lost: str | None = None
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

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _file_problem(self) -> StoreUnavailableError | None:
        """Unavailable unless the file at the path is still the one this store opened.

        The message names no path (it reaches ``/readyz``); the log line, once, does.
        """
        identity = self._file_identity()
        if identity is not None and identity == self._identity:
            if self._lost is not None:
                log.warning("the SQLite store's file is back at %s; writes resume", self._path)
                self._lost = None
            return None
        what = "deleted or moved away" if identity is None else "replaced by another file"
        if self._lost != what:
            log.error(
                "the SQLite store's file %s was %s while this process had it open; nothing is "
                "stored or acknowledged until the same file is back or the process restarts",
                self._path,
                what,
            )
            self._lost = what
        return StoreUnavailableError(
            f"the SQLite store's file was {what} after this process opened it",
            hint="restore it, or restart so the process opens the file now at its path",
        )

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
        lost = self._file_problem()
        if lost is not None:  # write nothing into a file no restart will open
            self._finish(batch, lost)
            return
        error = self._attempt(batch, isolate=False)
        if error is None and any(op.outcome[1] is not None for op in batch):
            error = self._attempt(batch, isolate=True)
        # After the commit too: what it wrote is acknowledged only if a restart would find it.
        self._finish(batch, error or self._file_problem())

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

    async def _one(
        self, query: LiteralString, params: Params = (), *, write: bool = True
    ) -> Row | None:
        statement = for_dialect(query, self.dialect)
        row: Row | None = await self._call(
            lambda conn: conn.execute(statement, params).fetchone(), write=write
        )
        return row

    async def _all(
        self, query: LiteralString, params: Params = (), *, write: bool = True
    ) -> list[Row]:
        statement = for_dialect(query, self.dialect)
        rows: list[Row] = await self._call(
            lambda conn: conn.execute(statement, params).fetchall(), write=write
        )
        return rows

    async def _run(self, query: LiteralString, params: Params = ()) -> int:
        statement = for_dialect(query, self.dialect)
        count: int = await self._call(lambda conn: conn.execute(statement, params).rowcount)
        return count

    # --- lifecycle and schema ---------------------------------------------------------------

    async def close(self) -> None:
        if self._thread.is_alive():
            self._ops.put(None)
            await asyncio.to_thread(self._thread.join)

    async def migrate(self) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            conn.execute(schema_migrations_table(self.dialect))
            done = {row[0] for row in conn.execute(APPLIED_MIGRATIONS)}
            applied = []
            for migration in MIGRATIONS:
                if migration.name in done:
                    continue
                for statement in migration.statements(self.dialect):
                    conn.execute(statement)
                conn.execute(RECORD_MIGRATION, (migration.name, self._clock()))
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
            return dict(conn.execute(APPLIED_MIGRATIONS).fetchall())

        return migration_states(await self._call(op, write=False))

    async def is_empty(self) -> bool:
        row = await self._one(
            "SELECT COUNT(*) FROM sqlite_master WHERE type IN ('table', 'view')", write=False
        )
        return row is not None and row[0] == 0

    async def ping(self) -> None:
        await self._one("SELECT 1", write=False)

    async def _identity_problem(self) -> str | None:
        problem = self._file_problem()
        return None if problem is None else str(problem)

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
                    f"AND {CONTACT_KEY} NOT IN (SELECT {CONTACT_KEY} FROM events "
                    "WHERE status = 'processing' AND lease_until >= :now) "
                    f"GROUP BY {CONTACT_KEY} ORDER BY MIN(id) LIMIT :limit",
                    {"now": now, "limit": limit},
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"UPDATE events SET status = 'processing', attempts = attempts + 1, "  # noqa: S608
                f"lease_until = ?, lease_owner = ?, updated_at = ? WHERE id IN ({marks}) "
                f"RETURNING {EVENT_COLUMNS}",
                (now + lease.total_seconds(), owner, now, *ids),
            ).fetchall()
            return sorted((event_from_row(row) for row in rows), key=lambda e: e.id)

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

    # --- strikes ----------------------------------------------------------------------------

    async def record_strike(
        self, event_id: int, contact_id: str, email: str, bounce_type: str, occurred_at: datetime
    ) -> list[StrikeRecord]:
        """One operation of the writer thread, so strike ids follow commit order by themselves."""
        address = email.lower()

        def op(conn: sqlite3.Connection) -> list[StrikeRecord]:
            conn.execute(
                INSERT_STRIKE,
                (event_id, contact_id, address, bounce_type, occurred_at.timestamp()),
            )
            rows = conn.execute(EARLIER_STRIKES, (contact_id, address, event_id)).fetchall()
            return strikes_from_rows(rows)

        return await self._call(op)

    # --- the alert outbox -------------------------------------------------------------------

    async def add_alert(self, alert: NewAlert, window: timedelta) -> int | None:
        def op(conn: sqlite3.Connection) -> int | None:
            if conn.execute(CLAIM_ALERT_KEY, alert_key_params(alert, window)).fetchone() is None:
                return None
            return int(conn.execute(INSERT_ALERT, alert_params(alert)).fetchone()[0])

        return await self._call(op)

    # --- OAuth tokens -----------------------------------------------------------------------

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


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db``, as SQLAlchemy spells them."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError("expected sqlite:///path/to/file.db")
    return Path(rest[1:])
