"""PostgreSQL backend: several connector processes on several hosts share one database.

Why it is built this way:

- A psycopg 3 ``AsyncConnectionPool`` gives each operation its own connection, so concurrent
  webhook calls commit concurrently and PostgreSQL's WAL flush groups their commits (the same
  group commit the SQLite backend does by hand). ``synchronous_commit`` is forced on for every
  connection: a method returns only after its commit is on disk, so a 202 is never premature.
- Connections run in autocommit mode. A method that is one statement is one transaction by
  itself; a method of several statements opens an explicit transaction. Either way every
  method is one transaction, as ``Store`` requires.
- Concurrency is settled inside the database, never by reading and then writing:
  dedupe and sync ownership are conditional upserts (``INSERT ... ON CONFLICT DO UPDATE ...
  WHERE ... RETURNING``: the conflicting row is locked even when the condition is false, so a
  racing writer waits and then sees the winner); strikes rely on the unique ``event_id``;
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

import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from connector.errors import ConfigError, StoreUnavailableError
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
    Store,
    StrikeRecord,
)
from connector.store.migrations import MIGRATIONS
from connector.store.sqlite import (
    _AUDIT_COLUMNS,
    _CONTACT_KEY,
    _EVENT_COLUMNS,
    Clock,
    _audit,
    _dt,
    _event,
    slot_span,
)

Conn = psycopg.AsyncConnection[TupleRow]

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

_ADD_EVENT: LiteralString = (
    "WITH fresh AS (INSERT INTO dedupe (dedupe_key, window_start, event_id) "
    "VALUES (%(key)s, %(now)s, nextval(pg_get_serial_sequence('events', 'id'))) "
    "ON CONFLICT (dedupe_key) DO UPDATE SET window_start = excluded.window_start, "
    "event_id = excluded.event_id WHERE dedupe.window_start <= %(cutoff)s RETURNING event_id) "
    "INSERT INTO events (id, source, received_at, contact_id, email, bounce_type, keap_count, "
    "dedupe_key, raw, status, attempts, next_attempt_at, updated_at) "
    "SELECT event_id, %(source)s, %(now)s, %(contact_id)s, %(email)s, %(bounce_type)s, "
    "%(keap_count)s, %(key)s, %(raw)s, 'queued', 0, %(now)s, %(now)s FROM fresh RETURNING id"
)

_SELECT_EVENTS: LiteralString = "SELECT " + _EVENT_COLUMNS + " FROM events "  # noqa: S608
_SELECT_AUDIT: LiteralString = "SELECT " + _AUDIT_COLUMNS + " FROM audit "  # noqa: S608
_CLAIM: LiteralString = (
    "UPDATE events SET status = 'processing', attempts = attempts + 1, "  # noqa: S608
    "lease_until = %(until)s, lease_owner = %(owner)s, updated_at = %(now)s "
    "WHERE id IN (SELECT id FROM events WHERE " + _DUE + " AND id IN ("
    "SELECT MIN(id) FROM events WHERE " + _DUE + " AND " + _CONTACT_KEY + " NOT IN ("
    "SELECT " + _CONTACT_KEY + " FROM events "
    "WHERE status = 'processing' AND lease_until >= %(now)s) "
    "GROUP BY " + _CONTACT_KEY + ") "
    "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "RETURNING " + _EVENT_COLUMNS
)

_AUDIT_UPSERT: LiteralString = (
    "INSERT INTO audit (event_id, contact_id, step, kind, status, before_value, "
    "after_value, detail, dry_run, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (event_id, step) DO UPDATE SET status = excluded.status, "
    "before_value = COALESCE(excluded.before_value, audit.before_value), "
    "after_value = COALESCE(excluded.after_value, audit.after_value), "
    "detail = COALESCE(excluded.detail, audit.detail), "
    "updated_at = excluded.updated_at RETURNING " + _AUDIT_COLUMNS
)

_ACQUIRE_SYNC: LiteralString = (
    "INSERT INTO sync_checkpoints (name, data, owner, heartbeat_at, updated_at) "
    "VALUES (%s, '', %s, %s, %s) ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
    "heartbeat_at = excluded.heartbeat_at WHERE sync_checkpoints.owner IS NULL "
    "OR sync_checkpoints.owner = excluded.owner "
    "OR sync_checkpoints.heartbeat_at < %s RETURNING name"
)

_RESERVE_SLOTS: LiteralString = (
    "INSERT INTO rate_limits (name, next_slot_at, updated_at) "
    "VALUES (%(name)s, %(now)s + %(span)s, %(now)s) "
    "ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at, "
    "next_slot_at = GREATEST(rate_limits.next_slot_at, excluded.updated_at) + %(span)s "
    "RETURNING next_slot_at"
)


def _strikes(rows: Sequence[Sequence[Any]]) -> list[StrikeRecord]:
    return [StrikeRecord(r[0], datetime.fromtimestamp(r[1], UTC)) for r in rows]


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


class PostgresStore(Store):
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
        return store

    async def _configure(self, conn: Conn) -> None:
        """Every pooled connection: durable commits, and the store's schema when one was given."""
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

    async def _one(self, query: LiteralString, params: Any = None) -> TupleRow | None:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def _all(self, query: LiteralString, params: Any = None) -> list[TupleRow]:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    async def _run(self, query: LiteralString, params: Any = None) -> int:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return cursor.rowcount

    async def _lock(self, conn: Conn, purpose: str) -> None:
        """Take the transaction-scoped advisory lock for ``purpose``; released at commit."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(" + _LOCK_KEY + ")",
            {"purpose": purpose, "scope": self._schema},
        )

    # --- lifecycle and schema ---------------------------------------------------------------

    async def close(self) -> None:
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
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cursor = await conn.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            applied = []
            for migration in MIGRATIONS:
                if migration.name in done:
                    continue
                for statement in migration.statements(self.dialect):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (%s, %s)",
                    (migration.name, self._clock()),
                )
                applied.append(migration.name)
            return applied

    async def migration_status(self) -> list[MigrationState]:
        async with self._transaction() as conn:
            cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            exists = await cursor.fetchone()
            applied: dict[str, float] = {}
            if exists is not None and exists[0]:
                cursor = await conn.execute("SELECT name, applied_at FROM schema_migrations")
                applied = {row[0]: row[1] for row in await cursor.fetchall()}
        return [MigrationState(m.name, _dt(applied.get(m.name))) for m in MIGRATIONS]

    async def ping(self) -> None:
        await self._one("SELECT 1")

    # --- events -----------------------------------------------------------------------------

    async def add_event(self, event: NewEvent, dedupe_window: timedelta | None) -> AddResult:
        """Decide and write in one statement; a duplicate then reads the winner's id.

        The upsert takes the event id from the sequence up front so the dedupe row and the
        event are written together. When the key is inside its window the upsert returns
        nothing but still holds the dedupe row's lock, so the follow-up read in the same
        transaction sees the committed winner and nothing can replace it meanwhile.
        """
        now = self._clock()
        cutoff = float("-inf") if dedupe_window is None else now - dedupe_window.total_seconds()
        params = {
            "key": event.dedupe_key,
            "now": now,
            "cutoff": cutoff,
            "source": event.source,
            "contact_id": event.contact_id,
            "email": event.email,
            "bounce_type": event.bounce_type,
            "keap_count": event.keap_count,
            "raw": event.raw,
        }
        async with self._transaction() as conn:
            cursor = await conn.execute(_ADD_EVENT, params)
            row = await cursor.fetchone()
            if row is not None:
                return AddResult(int(row[0]), duplicate=False)
            cursor = await conn.execute(
                "SELECT event_id FROM dedupe WHERE dedupe_key = %s", (event.dedupe_key,)
            )
            winner = await cursor.fetchone()
        assert winner is not None, "the conflicting dedupe row is locked by this transaction"
        return AddResult(int(winner[0]), duplicate=True)

    async def forget_dedupe(self, keys: Sequence[str]) -> list[str]:
        """One statement with an array parameter, so any number of keys is one transaction."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        rows = await self._all(
            "DELETE FROM dedupe WHERE dedupe_key = ANY(%s) RETURNING dedupe_key", (wanted,)
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
        return sorted((_event(row) for row in rows), key=lambda e: e.id)

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
            "UPDATE events SET status = %s, outcome = COALESCE(%s, outcome), "
            "last_error = %s, next_attempt_at = %s, lease_until = NULL, lease_owner = NULL, "
            "attempts = GREATEST(attempts - %s, 0), updated_at = %s WHERE id = %s",
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
        update: LiteralString = (
            "UPDATE events SET status = 'queued', attempts = 0, next_attempt_at = %s, "
            "lease_until = NULL, lease_owner = NULL, updated_at = %s WHERE "
        )
        if event_id is not None:
            return await self._run(
                update + "id = %s AND status IN ('failed', 'dead', 'queued', 'done')",
                (now, now, event_id),
            )
        if failed:
            return await self._run(update + "status IN ('failed', 'dead')", (now, now))
        return 0

    async def get_event(self, event_id: int) -> Event | None:
        row = await self._one(_SELECT_EVENTS + "WHERE id = %s", (event_id,))
        return None if row is None else _event(row)

    async def list_events(
        self, status: EventStatus | None = None, limit: int = 100, since: datetime | None = None
    ) -> list[Event]:
        rows = await self._all(
            _SELECT_EVENTS + "WHERE (%(status)s::text IS NULL OR status = %(status)s::text) "
            "AND received_at >= %(since)s ORDER BY id DESC LIMIT %(limit)s",
            {
                "status": None if status is None else status.value,
                "since": since.timestamp() if since else float("-inf"),
                "limit": limit,
            },
        )
        return [_event(row) for row in rows]

    async def queue_stats(self) -> QueueStats:
        """Counts and the oldest waiting event from one statement, so from one snapshot."""
        rows = await self._all(
            "SELECT status, COUNT(*), MIN(received_at) FROM events GROUP BY status"
        )
        counts = {row[0]: int(row[1]) for row in rows}
        waiting = [row[2] for row in rows if row[0] in ("queued", "failed", "processing")]
        age = None if not waiting else max(0.0, self._clock() - min(waiting))
        return QueueStats({s.value: counts.get(s.value, 0) for s in EventStatus}, age)

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
                "INSERT INTO strikes (event_id, contact_id, email, bounce_type, occurred_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                (event_id, contact_id, address, bounce_type, occurred_at.timestamp()),
            )
            cursor = await conn.execute(
                "SELECT bounce_type, occurred_at FROM strikes WHERE contact_id = %s "
                "AND email = %s AND id < (SELECT id FROM strikes WHERE event_id = %s) ORDER BY id",
                (contact_id, address, event_id),
            )
            return _strikes(await cursor.fetchall())

    async def strikes_for(self, contact_id: str, email: str) -> list[StrikeRecord]:
        rows = await self._all(
            "SELECT bounce_type, occurred_at FROM strikes "
            "WHERE contact_id = %s AND email = %s ORDER BY id",
            (contact_id, email.lower()),
        )
        return _strikes(rows)

    async def struck_address(self, event_id: int) -> str | None:
        rows = await self._all("SELECT email FROM strikes WHERE event_id = %s", (event_id,))
        return str(rows[0][0]) if rows else None

    # --- audit ------------------------------------------------------------------------------

    async def write_audit(self, entry: AuditWrite) -> AuditEntry:
        now = self._clock()
        row = await self._one(
            _AUDIT_UPSERT,
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
        )
        assert row is not None, "an upsert without a condition always returns its row"
        return _audit(row)

    async def audit_for_event(self, event_id: int) -> list[AuditEntry]:
        rows = await self._all(
            _SELECT_AUDIT + "WHERE event_id = %s ORDER BY id",
            (event_id,),
        )
        return [_audit(row) for row in rows]

    async def list_audit(
        self,
        contact_id: str | None = None,
        limit: int = 200,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        rows = await self._all(
            _SELECT_AUDIT + "WHERE (%(contact)s::text IS NULL OR contact_id = %(contact)s::text) "
            "AND created_at >= %(since)s ORDER BY id DESC LIMIT %(limit)s",
            {
                "contact": contact_id,
                "since": since.timestamp() if since else float("-inf"),
                "limit": limit,
            },
        )
        return [_audit(row) for row in rows]

    async def get_audit(self, audit_id: int) -> AuditEntry | None:
        row = await self._one(_SELECT_AUDIT + "WHERE id = %s", (audit_id,))
        return None if row is None else _audit(row)

    async def mark_undone(self, audit_id: int) -> None:
        await self._run("UPDATE audit SET undone_at = %s WHERE id = %s", (self._clock(), audit_id))

    # --- OAuth tokens -----------------------------------------------------------------------

    async def load_token(self) -> OAuthToken | None:
        row = await self._one(
            "SELECT access_token, refresh_token, expires_at, scope, token_type "
            "FROM oauth_tokens WHERE id = 1"
        )
        if row is None:
            return None
        return OAuthToken(
            access_token=SecretStr(row[0]),
            refresh_token=SecretStr(row[1]),
            expires_at=datetime.fromtimestamp(row[2], UTC),
            scope=row[3],
            token_type=row[4],
        )

    async def save_token(self, token: OAuthToken) -> None:
        await self._run(
            "INSERT INTO oauth_tokens (id, access_token, refresh_token, expires_at, scope, "
            "token_type, updated_at) VALUES (1, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
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

    async def clear_token(self) -> None:
        await self._run("DELETE FROM oauth_tokens")

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

    async def save_login_state(self, state: str) -> None:
        await self._run(
            "INSERT INTO kv (name, value, updated_at) VALUES ('oauth_login_state', %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (state, self._clock()),
        )

    async def take_login_state(self) -> str | None:
        row = await self._one("DELETE FROM kv WHERE name = 'oauth_login_state' RETURNING value")
        return None if row is None else str(row[0])

    # --- sync checkpoints -------------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> str | None:
        row = await self._one("SELECT data FROM sync_checkpoints WHERE name = %s", (name,))
        return str(row[0]) if row and row[0] else None

    async def save_checkpoint(self, name: str, data: str) -> None:
        now = self._clock()
        await self._run(
            "INSERT INTO sync_checkpoints (name, data, heartbeat_at, updated_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
            "heartbeat_at = excluded.heartbeat_at, updated_at = excluded.updated_at",
            (name, data, now, now),
        )

    async def clear_checkpoint(self, name: str) -> None:
        await self._run("UPDATE sync_checkpoints SET data = '' WHERE name = %s", (name,))

    async def acquire_sync(self, name: str, owner: str, stale_after: timedelta) -> bool:
        """One conditional upsert: a second run starting at the same moment waits on the row
        lock, then sees a live owner that is not itself and gets False."""
        now = self._clock()
        row = await self._one(
            _ACQUIRE_SYNC, (name, owner, now, now, now - stale_after.total_seconds())
        )
        return row is not None

    async def release_sync(self, name: str, owner: str) -> None:
        await self._run(
            "UPDATE sync_checkpoints SET owner = NULL WHERE name = %s AND owner = %s",
            (name, owner),
        )

    # --- shared request pacing --------------------------------------------------------------

    async def reserve_send_slots(self, name: str, count: int, interval: float) -> float:
        """One upsert, so one round trip and one short row lock per batch of slots.

        ``ON CONFLICT DO UPDATE`` locks the timeline's row and computes from its latest
        committed version, so concurrent reservers on any host queue on that lock and each
        gets the span after the previous one; no advisory lock or read-then-write is needed.
        """
        span = slot_span(count, interval)
        now = self._clock()
        row = await self._one(_RESERVE_SLOTS, {"name": name, "now": now, "span": span})
        assert row is not None, "an upsert without a condition always returns its row"
        return float(row[0]) - span
