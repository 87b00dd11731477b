"""The durable store: events, strike history, audit log, OAuth tokens and sync checkpoints."""

from __future__ import annotations

import time

from connector.errors import ConfigError, StoreUnavailableError
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
from connector.store.postgres import PostgresStore
from connector.store.sqlite import Clock, SQLiteStore, sqlite_path

__all__ = [
    "AddResult",
    "AuditEntry",
    "AuditWrite",
    "Event",
    "EventStatus",
    "MigrationState",
    "NewEvent",
    "PostgresStore",
    "QueueStats",
    "StepStatus",
    "Store",
    "StrikeRecord",
    "open_store",
]


async def open_store(
    url: str, *, clock: Clock = time.time, migrate: bool = False, check: bool = True
) -> Store:
    """Open the store named by ``CONNECTOR_DATABASE_URL``.

    With ``migrate`` the schema is brought up to date; otherwise, unless ``check`` is off (for
    ``db status``), a store with pending migrations is refused with the command that fixes it.
    """
    store = await _open_backend(url, clock)
    try:
        if migrate:
            await store.migrate()
        elif check and (pending := await store.pending_migrations()):
            raise StoreUnavailableError(
                f"the database has {len(pending)} pending migration(s) ({', '.join(pending)})",
                hint="run `connector db migrate`",
            )
    except BaseException:
        await store.close()
        raise
    return store


async def _open_backend(url: str, clock: Clock) -> Store:
    """Pick the backend by the URL's scheme; nothing else in the connector knows which runs."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return await PostgresStore.connect(url, clock=clock)
    if scheme != "sqlite":
        raise ConfigError(f"CONNECTOR_DATABASE_URL: unsupported database {scheme!r}")
    try:
        path = sqlite_path(url)
    except ValueError as exc:
        raise ConfigError(f"CONNECTOR_DATABASE_URL: {exc}") from None
    return SQLiteStore(path, clock=clock)
