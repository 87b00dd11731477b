"""The durable store: events, strike history, audit log, OAuth tokens and sync checkpoints.

Importing this package loads no database driver: ``open_store`` imports the backend a URL
names when it opens one, so commands that never touch the store (``--help``, ``policy check``)
stay quick. ``PostgresStore`` and ``SQLiteStore`` are still importable from here by name;
they load their backend on first use.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from connector.errors import ConfigError, StoreUnavailableError
from connector.store.base import (
    AddResult,
    AlertRecord,
    AuditEntry,
    AuditWrite,
    Clock,
    Event,
    EventStatus,
    Incident,
    IncidentCount,
    MigrationState,
    NewAlert,
    NewEvent,
    QueueStats,
    StepStatus,
    Store,
    StrikeRecord,
)

if TYPE_CHECKING:
    from connector.store.postgres import PostgresStore
    from connector.store.sqlite import SQLiteStore

__all__ = [
    "AddResult",
    "AlertRecord",
    "AuditEntry",
    "AuditWrite",
    "Clock",
    "Event",
    "EventStatus",
    "Incident",
    "IncidentCount",
    "MigrationState",
    "NewAlert",
    "NewEvent",
    "PostgresStore",
    "QueueStats",
    "SQLiteStore",
    "StepStatus",
    "Store",
    "StrikeRecord",
    "open_store",
]

log = logging.getLogger("connector.store")


def __getattr__(name: str) -> object:
    """Load a backend class on first use, so ``import connector.store`` loads no driver."""
    if name == "PostgresStore":
        from connector.store.postgres import PostgresStore

        return PostgresStore
    if name == "SQLiteStore":
        from connector.store.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_store(
    url: str,
    *,
    clock: Clock = time.time,
    migrate: bool = False,
    check: bool = True,
    create_if_empty: bool = False,
) -> Store:
    """Open the store named by ``CONNECTOR_DATABASE_URL``.

    With ``migrate`` the schema is brought up to date. Otherwise, unless ``check`` is off (for
    ``db status``), a store with pending migrations is refused with the command that fixes it;
    with ``create_if_empty`` a brand-new store (no tables at all: a new SQLite file, an empty
    PostgreSQL schema) is created instead of refused. An existing store is never migrated
    behind the operator's back: upgrading one stays ``connector db migrate``.
    """
    store = await _open_backend(url, clock)
    try:
        if migrate:
            await store.migrate()
        elif check and (pending := await store.pending_migrations()):
            if create_if_empty and await store.is_empty():
                applied = await store.migrate()
                log.info("created the store's schema (%d migrations)", len(applied))
            else:
                listed = ", ".join(pending)
                raise StoreUnavailableError(
                    f"the database has {len(pending)} pending migration(s) ({listed})",
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
        from connector.store.postgres import PostgresStore

        return await PostgresStore.connect(url, clock=clock)
    if scheme != "sqlite":
        raise ConfigError(f"CONNECTOR_DATABASE_URL: unsupported database {scheme!r}")
    from connector.store.sqlite import SQLiteStore, sqlite_path

    try:
        path = sqlite_path(url)
    except ValueError as exc:
        raise ConfigError(f"CONNECTOR_DATABASE_URL: {exc}") from None
    return SQLiteStore(path, clock=clock)
