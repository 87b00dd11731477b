"""What the store keeps beyond one event: incidents per receiving domain and steps falling due.

Both backends run these shared statements through ``SQLStore``'s primitives (one statement, one
transaction each), so they live beside it as a mixin rather than in ``sql.py``'s long list.

Incidents (DESIGN 7a): every bounce of an incident type is counted once per event in
``incident_bounces``; at the threshold one row in ``incidents`` opens for the domain. A partial
unique index allows one open incident per domain, and opening is ``INSERT ... ON CONFLICT``
against it, so two replicas reaching the threshold together open it once: the second finds the
first's row (and who opened it) instead of a second one.

Steps falling due (``expire``): an audit row with ``due_at`` set is a step whose follow-up is due
then; ``claim_due`` moves ``due_at`` on by a lease in one statement, so only one replica takes it,
and a replica that dies leaves it to be taken again after the lease.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from connector.store.base import AuditEntry, Incident, IncidentCount

INCIDENT_COLUMNS: LiteralString = (
    "id, domain, opened_at, opened_by, window_start, last_hot_at, peak, closed_at"
)

INSERT_INCIDENT_BOUNCE: LiteralString = (
    "INSERT INTO incident_bounces (event_id, domain, bounce_type, occurred_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
COUNT_INCIDENT_BOUNCES: LiteralString = (
    "SELECT COUNT(*) FROM incident_bounces WHERE domain = ? AND occurred_at > ? "
    "AND occurred_at <= ?"
)
# Closes the open incidents (of one domain, or all) that have been below the threshold for a
# whole window: the last time they were at or above it is a window ago, and the count now is
# below it.
CLOSE_INCIDENTS: LiteralString = (
    "UPDATE incidents SET closed_at = ? WHERE closed_at IS NULL "
    "AND (CAST(? AS TEXT) IS NULL OR domain = CAST(? AS TEXT)) AND last_hot_at <= ? "
    "AND (SELECT COUNT(*) FROM incident_bounces b WHERE b.domain = incidents.domain "
    "AND b.occurred_at > ? AND b.occurred_at <= ?) < ? RETURNING domain"
)
OPEN_INCIDENT: LiteralString = (
    "INSERT INTO incidents (domain, opened_at, opened_by, window_start, last_hot_at, peak) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (domain) WHERE closed_at IS NULL DO UPDATE SET "
    "last_hot_at = GREATEST(incidents.last_hot_at, excluded.last_hot_at), "
    "peak = GREATEST(incidents.peak, excluded.peak) RETURNING " + INCIDENT_COLUMNS
)
_SELECT_INCIDENTS: LiteralString = "SELECT " + INCIDENT_COLUMNS
OPEN_AT: LiteralString = (
    _SELECT_INCIDENTS + " FROM incidents WHERE domain = ? AND closed_at IS NULL"
)
LIST_INCIDENTS: LiteralString = (
    _SELECT_INCIDENTS + ", (SELECT COUNT(*) FROM incident_bounces b "  # noqa: S608
    "WHERE b.domain = incidents.domain AND b.occurred_at > incidents.window_start "
    "AND (incidents.closed_at IS NULL OR b.occurred_at <= incidents.closed_at)) "
    "FROM incidents WHERE closed_at IS NULL OR closed_at >= ? OR opened_at >= ? "
    "ORDER BY opened_at DESC, id DESC"
)

DUE_AUDIT_COLUMNS: LiteralString = (
    "id, event_id, contact_id, step, kind, status, before_value, after_value, detail, dry_run, "
    "created_at, updated_at, undone_at, reason"
)
_SELECT_AUDIT: LiteralString = "SELECT " + DUE_AUDIT_COLUMNS
DUE_AUDIT: LiteralString = (
    _SELECT_AUDIT + " FROM audit WHERE due_at IS NOT NULL AND due_at <= ? "
    "AND status = 'done' AND undone_at IS NULL AND dry_run = 0 ORDER BY due_at, id LIMIT ?"
)
CLAIM_DUE: LiteralString = "UPDATE audit SET due_at = ? WHERE id = ? AND due_at <= ?"
CLEAR_DUE: LiteralString = "UPDATE audit SET due_at = NULL WHERE id = ?"

Row = Sequence[Any]


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def incident_from_row(row: Row, bounces: int | None = None) -> Incident:
    return Incident(
        id=int(row[0]),
        domain=row[1],
        opened_at=_dt(row[2]),
        opened_by=int(row[3]),
        peak=int(row[6]),
        bounces=int(row[8]) if bounces is None else bounces,
        closed_at=None if row[7] is None else _dt(row[7]),
    )


class FollowUps(abc.ABC):
    """Incidents and due steps on top of a backend's ``_one`` / ``_all`` / ``_run``."""

    @abc.abstractmethod
    async def _one(
        self, query: LiteralString, params: Sequence[Any] = (), *, write: bool = True
    ) -> Row | None: ...

    @abc.abstractmethod
    async def _all(
        self, query: LiteralString, params: Sequence[Any] = (), *, write: bool = True
    ) -> Sequence[Row]: ...

    @abc.abstractmethod
    async def _run(self, query: LiteralString, params: Sequence[Any] = ()) -> int: ...

    @abc.abstractmethod
    def _audit_row(self, row: Row) -> AuditEntry: ...

    # --- incidents ----------------------------------------------------------------------------

    async def count_incident_bounce(
        self,
        event_id: int,
        domain: str,
        bounce_type: str,
        at: datetime,
        within: timedelta,
        threshold: int,
    ) -> IncidentCount:
        moment, span = at.timestamp(), within.total_seconds()
        await self._run(INSERT_INCIDENT_BOUNCE, (event_id, domain, bounce_type, moment))
        await self._close(moment, span, threshold, domain)
        row = await self._one(COUNT_INCIDENT_BOUNCES, (domain, moment - span, moment))
        count = int(row[0]) if row is not None else 0
        if count >= threshold:
            params = (domain, moment, event_id, moment - span, moment, count)
            opened = await self._one(OPEN_INCIDENT, params)
        else:
            opened = await self._one(OPEN_AT, (domain,), write=False)
        return IncidentCount(count, None if opened is None else incident_from_row(opened, count))

    async def close_incidents(self, now: datetime, within: timedelta, threshold: int) -> list[str]:
        return await self._close(now.timestamp(), within.total_seconds(), threshold, None)

    async def _close(
        self, moment: float, span: float, threshold: int, domain: str | None
    ) -> list[str]:
        params = (moment, domain, domain, moment - span, moment - span, moment, threshold)
        return [str(row[0]) for row in await self._all(CLOSE_INCIDENTS, params)]

    async def list_incidents(self, since: datetime) -> list[Incident]:
        cutoff = since.timestamp()
        rows = await self._all(LIST_INCIDENTS, (cutoff, cutoff), write=False)
        return [incident_from_row(row) for row in rows]

    # --- steps falling due --------------------------------------------------------------------

    async def due_audit(self, now: datetime, limit: int = 100) -> list[AuditEntry]:
        rows = await self._all(DUE_AUDIT, (now.timestamp(), limit), write=False)
        return [self._audit_row(row) for row in rows]

    async def claim_due(self, audit_id: int, now: datetime, until: datetime) -> bool:
        return await self._run(CLAIM_DUE, (until.timestamp(), audit_id, now.timestamp())) == 1

    async def clear_due(self, audit_id: int) -> None:
        await self._run(CLEAR_DUE, (audit_id,))
