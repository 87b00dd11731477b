"""PostgreSQL backend: several connector processes on several hosts share one database.

Why it is built this way:

- A psycopg 3 ``AsyncConnectionPool`` gives each operation its own connection.
  ``synchronous_commit`` is forced on for every connection: a method returns only after its
  commit is on disk, so a 202 is never premature.
- ``add_event`` does group commit, as the SQLite backend does: one writer task per store takes
  every event waiting and stores them with one statement, so a burst of webhook calls costs
  one round trip and one WAL flush instead of one each (see ``add_event``).
- Connections run in autocommit mode. A method that is one statement is one transaction by
  itself; a method of several statements opens an explicit transaction. Either way every
  method is one transaction, as ``Store`` requires.
- Concurrency is settled inside the database, never by reading and then writing:
  dedupe and sync ownership are upserts on a primary key (``INSERT ... ON CONFLICT DO UPDATE``
  decides on the conflicting row's latest committed version under its lock, so a racing writer
  waits and then sees the winner); strikes rely on the unique ``event_id``;
  claims and strikes take short transaction-scoped advisory locks (see ``claim_events`` and
  ``record_strike``); the OAuth refresh takes a session advisory lock (see ``refresh_lock``).
- Advisory lock keys are scoped by schema, so test schemas (or two deployments sharing one
  database in different schemas) never wait on each other.
- Times are epoch seconds (``DOUBLE PRECISION``) from the injected clock, exactly as in SQLite;
  the server's own clock is never read.
- Connection and server failures become ``StoreUnavailableError`` (the webhook answers 503).
  Their messages name the host, port and database but never the password. The pool checks a
  connection before lending it, so after a server restart or failover the first request gets
  a fresh connection instead of a 503 (a Keap callback is sent once; a 503 may lose it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.abc import Buffer, Dumper
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg.types.string import StrBinaryDumper, StrDumper, StrDumperUnknown
from psycopg_pool import AsyncConnectionPool

from connector.errors import ConfigError, StoreUnavailableError
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
    SQLStore,
    alert_key_params,
    alert_params,
    event_from_row,
    for_dialect,
    migration_states,
    schema_migrations_table,
    strikes_from_rows,
)

__all__ = ["PostgresStore", "url_schema"]

Conn = psycopg.AsyncConnection[TupleRow]
Params = Sequence[Any] | Mapping[str, Any]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SEARCH_PATH_OPTION = re.compile(r"-c\s*search_path\s*=\s*([^\s,]+)")
_UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.ReadOnlySqlTransaction,
)

# One advisory lock key per (purpose, schema). The scope falls back to the session's schema when
# none was configured, so every process pointing at the same tables computes the same key.
_LOCK_KEY: LiteralString = (
    "hashtextextended('keap-bounce-connector:' || %(purpose)s::text || ':' || "
    "COALESCE(%(scope)s::text, current_schema()::text, ''), 0)"
)
_DUE: LiteralString = (
    "((status IN ('queued', 'failed') AND next_attempt_at <= %(now)s) "
    "OR (status = 'processing' AND lease_until < %(now)s))"
)

_BATCH_LIMIT = 512

_IDENTITY: LiteralString = (
    "SELECT d.oid, n.oid FROM pg_catalog.pg_database d "
    "LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = current_schema() "
    "WHERE d.datname = current_database()"
)

# Store a batch of events with distinct dedupe keys and one dedupe cutoff, in one statement.
# ``batch`` draws each event's id up front. ``claimed`` upserts the dedupe rows in key order (so
# two writers' batches lock shared keys in the same order and cannot deadlock): a key seen
# before the cutoff, or never, takes the new event's id; a key inside its window keeps its
# winner. The upsert always returns the row's id after the decision, read from the latest
# committed version under the row lock, so a duplicate learns the winner without a second
# read. ``stored`` inserts only the events whose id won. The result says, per key, which id
# holds it and whether it is ours.
_ADD_EVENTS: LiteralString = (
    "WITH batch AS MATERIALIZED ("
    "SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, b.* "
    "FROM unnest(%(keys)s::text[], %(sources)s::text[], %(contact_ids)s::text[], "
    "%(emails)s::text[], %(bounce_types)s::text[], %(keap_counts)s::int[], %(raws)s::text[]) "
    "AS b (dedupe_key, source, contact_id, email, bounce_type, keap_count, raw)), "
    "claimed AS (INSERT INTO dedupe AS d (dedupe_key, window_start, event_id) "
    "SELECT dedupe_key, %(now)s, id FROM batch ORDER BY dedupe_key "
    "ON CONFLICT (dedupe_key) DO UPDATE SET "
    "window_start = CASE WHEN d.window_start <= %(cutoff)s "
    "THEN excluded.window_start ELSE d.window_start END, "
    "event_id = CASE WHEN d.window_start <= %(cutoff)s "
    "THEN excluded.event_id ELSE d.event_id END "
    "RETURNING dedupe_key, event_id), "
    "stored AS (INSERT INTO events (id, source, received_at, contact_id, email, bounce_type, "
    "keap_count, dedupe_key, raw, status, attempts, next_attempt_at, updated_at) "
    "SELECT b.id, b.source, %(now)s, b.contact_id, b.email, b.bounce_type, b.keap_count, "
    "b.dedupe_key, b.raw, 'queued', 0, %(now)s, %(now)s "
    "FROM batch b JOIN claimed c ON c.event_id = b.id) "
    "SELECT c.dedupe_key, c.event_id, c.event_id = b.id "
    "FROM claimed c JOIN batch b USING (dedupe_key)"
)

_CLAIM: LiteralString = (
    "UPDATE events SET status = 'processing', attempts = attempts + 1, "  # noqa: S608
    "lease_until = %(until)s, lease_owner = %(owner)s, updated_at = %(now)s "
    "WHERE id IN (SELECT id FROM events WHERE " + _DUE + " AND id IN ("
    "SELECT MIN(id) FROM events WHERE " + _DUE + " AND " + CONTACT_KEY + " NOT IN ("
    "SELECT " + CONTACT_KEY + " FROM events "
    "WHERE status = 'processing' AND lease_until >= %(now)s) "
    "GROUP BY " + CONTACT_KEY + ") "
    "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "RETURNING " + EVENT_COLUMNS
)


def _pg_text(value: str) -> str:
    """``value`` as PostgreSQL stores it through this store (see ``_nul_safe``)."""
    return value.replace("\x00", "\ufffd")


def _nul_safe(dumper: type[Dumper]) -> type[Dumper]:
    """``dumper`` with NUL replaced by U+FFFD: PostgreSQL text cannot hold NUL, SQLite can.

    Keap's data, its error messages or a callback can carry one; storing the value slightly
    altered beats failing to store the event, its outcome or its audit line at all.
    """

    class NulSafe(dumper):  # type: ignore[valid-type,misc]
        def dump(self, obj: str) -> Buffer | None:
            dumped: Buffer | None = super().dump(_pg_text(obj))
            return dumped

    NulSafe.__name__ = f"NulSafe{dumper.__name__}"
    return NulSafe


_NUL_SAFE_DUMPERS = [_nul_safe(d) for d in (StrDumper, StrDumperUnknown, StrBinaryDumper)]


@dataclass(frozen=True)
class _Add:
    """One ``add_event`` call waiting for the writer; ``future`` gets its result or error."""

    event: NewEvent
    window: timedelta | None
    future: asyncio.Future[AddResult]


def _settle(add: _Add, result: AddResult | BaseException) -> None:
    """Answer one caller, unless it stopped waiting (its event is stored all the same)."""
    if add.future.done():
        return
    if isinstance(result, BaseException):
        add.future.set_exception(result)
    else:
        add.future.set_result(result)


def _statements(batch: list[_Add]) -> list[list[_Add]]:
    """Split a batch into the groups one ``_ADD_EVENTS`` statement can take, in a safe order.

    A statement may upsert a dedupe row only once and applies one cutoff, so the n-th add of a
    key goes to the n-th round and each round is split by window. Rounds run in order, so the
    adds of one key run in the order they came, exactly as if each were its own transaction;
    adds of different keys do not affect each other. A batch with no repeated key and one
    window (the webhook's usual burst) is a single statement.
    """
    groups: dict[tuple[int, timedelta | None], list[_Add]] = {}
    seen: Counter[str] = Counter()
    for add in batch:
        key = add.event.dedupe_key
        groups.setdefault((seen[key], add.window), []).append(add)
        seen[key] += 1
    return [groups[g] for g in sorted(groups, key=lambda g: g[0])]


def url_schema(url: str) -> str | None:
    """The schema named by ``options=-csearch_path=...`` in a URL, so ``migrate`` can create it."""
    options = _conninfo(url).get("options") or ""
    match = _SEARCH_PATH_OPTION.search(str(options))
    if match is None:
        return None
    raw = match.group(1)
    return raw[1:-1] if raw.startswith('"') and raw.endswith('"') else raw.lower()


def _conninfo(url: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(
            "CONNECTOR_DATABASE_URL: not a valid PostgreSQL URL",
            hint="expected postgresql://user[:password]@host[:port]/database",
        ) from None


class PostgresStore(SQLStore):
    """The ``Store`` on PostgreSQL; open it with ``await PostgresStore.connect(url)``."""

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
    ) -> None:
        params = _conninfo(url)
        self._clock = clock
        self._secret = str(params.get("password") or "")
        self._where = (
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
            f"/{params.get('dbname') or params.get('user') or ''}"
        )
        self._schema = schema if schema is not None else url_schema(url)
        if self._schema is not None and not _SCHEMA_NAME.fullmatch(self._schema):
            raise ConfigError(f"PostgreSQL schema {self._schema!r}: use lowercase a-z, 0-9, _")
        self._explicit_schema = schema is not None
        extra = (
            {} if "connect_timeout" in params else {"connect_timeout": str(max(1, int(timeout)))}
        )
        self._conninfo_text = make_conninfo(url, **extra)
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo_text,
            kwargs={"autocommit": True},
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            timeout=timeout,
            name="connector-store",
        )
        self._identity: tuple[Any, ...] | None = None
        self._adds: asyncio.Queue[_Add | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def connect(cls, url: str, *, clock: Clock = time.time, **options: Any) -> PostgresStore:
        """Open the pool, failing fast with ``StoreUnavailableError`` if the server is down.

        One direct connection first: the pool would retry quietly until its timeout and then
        report only that it timed out, while this surfaces libpq's own reason at once
        (refused, unknown database, authentication failed).
        """
        store = cls(url, clock=clock, **options)
        await (await store._dedicated_connection()).close()
        try:
            await store._pool.open(wait=True, timeout=store._timeout)
        except _UNAVAILABLE as exc:
            await store._pool.close()
            raise store._unavailable(exc) from None
        store._identity = await store._database_identity()
        return store

    async def _database_identity(self) -> tuple[Any, ...] | None:
        """The opened database and schema by their object ids: a database dropped and made
        again, or a name now pointing at another server, has others."""
        row = await self._one(_IDENTITY, write=False)
        return None if row is None else tuple(row)

    async def _identity_problem(self) -> str | None:
        try:
            now = await self._database_identity()
        except StoreUnavailableError:
            return None  # unreachable: ``readiness`` says so next
        if self._identity is None or None in self._identity:  # no schema yet at start
            self._identity = now
            return None
        if now == self._identity:
            return None
        return "the database or schema at the configured URL is not the one opened at start"

    async def _configure(self, conn: Conn) -> None:
        """Every pooled connection: durable commits, text PostgreSQL can hold, and the store's
        schema when one was given."""
        for dumper in _NUL_SAFE_DUMPERS:
            conn.adapters.register_dumper(str, dumper)
        await conn.execute("SET synchronous_commit TO on")
        if self._explicit_schema and self._schema is not None:
            await conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema))
            )

    # --- plumbing ---------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        if isinstance(exc, psycopg.errors.UndefinedTable):
            return StoreUnavailableError(
                f"the PostgreSQL store at {self._where} has no tables yet",
                hint="run `connector db migrate`",
            )
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if self._secret:
            detail = detail.replace(self._secret, "***")
        return StoreUnavailableError(f"the PostgreSQL store at {self._where} failed: {detail}")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _one(
        self, query: LiteralString, params: Params = (), *, write: bool = True
    ) -> TupleRow | None:
        async with self._connection() as conn:
            cursor = await conn.execute(for_dialect(query, self.dialect), params or None)
            return await cursor.fetchone()

    async def _all(
        self, query: LiteralString, params: Params = (), *, write: bool = True
    ) -> list[TupleRow]:
        async with self._connection() as conn:
            cursor = await conn.execute(for_dialect(query, self.dialect), params or None)
            return await cursor.fetchall()

    async def _run(self, query: LiteralString, params: Params = ()) -> int:
        async with self._connection() as conn:
            cursor = await conn.execute(for_dialect(query, self.dialect), params or None)
            return cursor.rowcount

    async def _lock(self, conn: Conn, purpose: str) -> None:
        """Take the transaction-scoped advisory lock for ``purpose``; released at commit."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(" + _LOCK_KEY + ")",
            {"purpose": purpose, "scope": self._schema},
        )

    # --- lifecycle and schema ---------------------------------------------------------------

    async def close(self) -> None:
        """Let the writer store and answer every event it was given, then close the pool."""
        self._closing = True
        if self._writer is not None and not self._writer.done():
            self._adds.put_nowait(None)
            await self._writer
        await self._pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction under an advisory lock.

        The lock makes a second process that migrates at the same moment wait, then find every
        migration recorded and apply nothing. DDL is transactional in PostgreSQL, so a failed
        migration leaves no half-built schema behind.
        """
        async with self._transaction() as conn:
            await self._lock(conn, "migrate")
            if self._schema is not None:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
                )
            await conn.execute(schema_migrations_table(self.dialect))
            cursor = await conn.execute(APPLIED_MIGRATIONS)
            done = {row[0] for row in await cursor.fetchall()}
            applied = []
            for migration in MIGRATIONS:
                if migration.name in done:
                    continue
                for statement in migration.statements(self.dialect):
                    await conn.execute(statement)
                await conn.execute(
                    for_dialect(RECORD_MIGRATION, self.dialect), (migration.name, self._clock())
                )
                applied.append(migration.name)
        self._identity = await self._database_identity()  # the schema may be new
        return applied

    async def migration_status(self) -> list[MigrationState]:
        async with self._transaction() as conn:
            cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            exists = await cursor.fetchone()
            applied: dict[str, float] = {}
            if exists is not None and exists[0]:
                cursor = await conn.execute(APPLIED_MIGRATIONS)
                applied = {row[0]: row[1] for row in await cursor.fetchall()}
        return migration_states(applied)

    async def is_empty(self) -> bool:
        """No table, view or sequence in the schema the store's tables would go to.

        ``current_schema()`` is NULL when the search path names a schema that does not exist
        yet (``migrate`` creates it): that store is empty too.
        """
        row = await self._one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S'))",
            write=False,
        )
        return row is not None and bool(row[0])

    async def ping(self) -> None:
        await self._one("SELECT 1", write=False)

    # --- events -----------------------------------------------------------------------------

    async def add_event(self, event: NewEvent, dedupe_window: timedelta | None) -> AddResult:
        """Queue the event for this store's writer task and wait until its batch is committed.

        Group commit: while one batch is being written, the next calls wait in the queue, and
        the writer takes them all at once. Each batch is one statement in autocommit mode, so
        one transaction and one WAL flush; the callers are answered only after it returns,
        so after the commit is on disk. Writers in other processes or on other hosts are
        settled by the dedupe table's primary key, never by a read: ``ON CONFLICT`` waits for
        a concurrent writer of the same key and then decides on its committed row.
        """
        if self._closing:
            raise StoreUnavailableError(f"the PostgreSQL store at {self._where} is closed")
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_events(), name="connector-store-writer")
        future: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self._adds.put_nowait(_Add(event, dedupe_window, future))
        return await future

    async def _write_events(self) -> None:
        """The writer task: take every add waiting (up to a limit), store them, repeat.

        ``None`` in the queue is ``close`` asking it to stop once what came before is stored.
        """
        while True:
            batch = [await self._adds.get()]
            while len(batch) < _BATCH_LIMIT and not self._adds.empty():
                batch.append(self._adds.get_nowait())
            adds = [add for add in batch if add is not None]
            for group in _statements(adds):
                try:
                    await self._store_group(group)
                except BaseException as exc:  # no caller may wait forever on a broken writer
                    for add in group:
                        _settle(add, exc)
                    if not isinstance(exc, Exception):
                        raise
            if len(adds) < len(batch):
                return

    async def _store_group(self, group: list[_Add]) -> None:
        """Store a group in one statement; if one event breaks it, store each event alone.

        A failed statement writes nothing, so retrying each event in its own statement loses
        nothing and stores nothing twice: the bad event fails for its own caller only, and the
        others still commit. When the store itself is unavailable every caller is told so,
        without retrying one by one.
        """
        try:
            results = await self._insert_events(group)
        except StoreUnavailableError as exc:
            for add in group:
                _settle(add, exc)
            return
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0], exc)
                return
            for add in group:
                await self._store_group([add])
            return
        for add in group:
            _settle(add, results[_pg_text(add.event.dedupe_key)])

    async def _insert_events(self, group: list[_Add]) -> dict[str, AddResult]:
        """Run ``_ADD_EVENTS`` for adds of distinct keys and one window; results by key."""
        now = self._clock()
        window = group[0].window
        cutoff = float("-inf") if window is None else now - window.total_seconds()
        events = [add.event for add in group]
        params = {
            "now": now,
            "cutoff": cutoff,
            "keys": [e.dedupe_key for e in events],
            "sources": [e.source for e in events],
            "contact_ids": [e.contact_id for e in events],
            "emails": [e.email for e in events],
            "bounce_types": [e.bounce_type for e in events],
            "keap_counts": [e.keap_count for e in events],
            "raws": [e.raw for e in events],
        }
        rows = await self._all(_ADD_EVENTS, params)
        return {key: AddResult(int(event_id), duplicate=not ours) for key, event_id, ours in rows}

    async def forget_dedupe(self, keys: Sequence[str]) -> list[str]:
        """One statement with an array parameter, so any number of keys is one transaction.

        It locks the rows in key order, the order ``add_event`` batches lock them in, so a
        batch and a forget sharing keys cannot deadlock.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self._all(
            "DELETE FROM dedupe WHERE dedupe_key IN (SELECT dedupe_key FROM dedupe "
            "WHERE dedupe_key = ANY(%s) ORDER BY dedupe_key FOR UPDATE) RETURNING dedupe_key",
            (wanted,),
        )
        held = {row[0] for row in rows}
        return [key for key in wanted if key in held]

    async def claim_events(self, limit: int, lease: timedelta, owner: str) -> list[Event]:
        """Claim due events, at most one per contact, even with claimers on several hosts.

        ``FOR UPDATE SKIP LOCKED`` alone cannot keep one contact to one worker: two claimers
        whose snapshots overlap both see the contact idle, and when they disagree on which of
        its events is due (hosts' clocks differ, or a retry time passes between them) each
        locks a different row of it. So claimers first take one advisory lock per schema, held
        only for this short transaction. Under READ COMMITTED the claim statement's snapshot is
        taken after the lock is granted, so it sees every earlier claim as committed. Only
        claimers serialise; workers completing or failing events never wait on it, and ``SKIP
        LOCKED`` steps over a row a worker is updating at that moment. The due condition is
        repeated on the locked rows so a row changed just before the lock is re-checked against
        its new version.
        """
        now = self._clock()
        params = {"now": now, "until": now + lease.total_seconds(), "owner": owner, "limit": limit}
        async with self._transaction() as conn:
            await self._lock(conn, "claim")
            cursor = await conn.execute(_CLAIM, params)
            rows = await cursor.fetchall()
        return sorted((event_from_row(row) for row in rows), key=lambda e: e.id)

    async def renew_leases(
        self, event_ids: Sequence[int], owner: str, lease: timedelta
    ) -> set[int]:
        if not event_ids:
            return set()
        rows = await self._all(
            "UPDATE events SET lease_until = %s WHERE id = ANY(%s) "
            "AND status = 'processing' AND lease_owner = %s RETURNING id",
            (self._clock() + lease.total_seconds(), list(event_ids), owner),
        )
        return {int(row[0]) for row in rows}

    # --- strikes ----------------------------------------------------------------------------

    async def record_strike(
        self, event_id: int, contact_id: str, email: str, bounce_type: str, occurred_at: datetime
    ) -> list[StrikeRecord]:
        """Insert once by ``event_id``, then read the strikes with a lower id.

        An advisory lock per address makes strike ids follow commit order: without it two
        events of one address could take ids 10 and 11, the second commit first and see no
        history, and a re-run later would see strike 10, breaking "same history as the first
        time". A re-run of the same event waits on the unique ``event_id`` and inserts nothing.
        """
        address = email.lower()
        async with self._transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended("
                "'keap-bounce-connector:strike:' || %s || chr(31) || %s, 0))",
                (contact_id, address),
            )
            await conn.execute(
                for_dialect(INSERT_STRIKE, self.dialect),
                (event_id, contact_id, address, bounce_type, occurred_at.timestamp()),
            )
            cursor = await conn.execute(
                for_dialect(EARLIER_STRIKES, self.dialect), (contact_id, address, event_id)
            )
            return strikes_from_rows(await cursor.fetchall())

    # --- the alert outbox -------------------------------------------------------------------

    async def add_alert(self, alert: NewAlert, window: timedelta) -> int | None:
        """The key upsert locks the ``(kind, subject)`` row until this transaction commits, so a
        replica raising the same alert waits, then sees this raise and stores nothing."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                for_dialect(CLAIM_ALERT_KEY, self.dialect), alert_key_params(alert, window)
            )
            if await cursor.fetchone() is None:
                return None
            cursor = await conn.execute(
                for_dialect(INSERT_ALERT, self.dialect), alert_params(alert)
            )
            row = await cursor.fetchone()
            assert row is not None, "an insert with RETURNING returns its row"
            return int(row[0])

    # --- OAuth tokens -----------------------------------------------------------------------

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        return self._session_lock("refresh")

    @asynccontextmanager
    async def _session_lock(self, purpose: str) -> AsyncIterator[None]:
        """Hold a session advisory lock on a connection of its own for the whole block.

        A dedicated connection, not a pooled one, because the block itself uses the store
        (load and save the token) and must not compete with the lock for pool slots. If this
        process dies, its connection closes and the server releases the lock, so a crashed
        refresher never blocks the others.
        """
        conn = await self._dedicated_connection()
        try:
            try:
                await conn.execute(
                    "SELECT pg_advisory_lock(" + _LOCK_KEY + ")",
                    {"purpose": purpose, "scope": self._schema},
                )
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from None
            yield
        finally:
            await conn.close()

    async def _dedicated_connection(self) -> Conn:
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo_text, autocommit=True)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from None
        return conn
