"""``connector events``, ``audit`` and ``undo``: what was received, what was done to whom.

Every value shown here came from a callback, from Keap or from a step Keap answered: each goes
to the terminal through :mod:`connector.cli.render` as inert text.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import typer

from connector.cli.base import run_async, settings, typer_app, with_store
from connector.cli.render import add_row, print_table, table, visible
from connector.errors import InputError

if TYPE_CHECKING:
    from connector.store import AuditEntry, Event, Store

app = typer_app("Inspect and re-queue stored events.")


class StatusChoice(enum.StrEnum):
    """The values of ``connector.store.EventStatus``, known here without importing the store."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"


@app.command("list")
def events_list(
    status: StatusChoice | None = typer.Option(None, "--status", help="Only this status."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
) -> None:
    """List stored events, newest first."""
    from connector.logs import mask_email
    from connector.store import EventStatus

    wanted = None if status is None else EventStatus(status.value)
    rows = with_store(lambda store: store.list_events(wanted, limit))
    events = table(
        "id", "received", "source", "type", "contact", "email", "status", "tries", "note"
    )
    for e in rows:
        add_row(
            events,
            e.id,
            f"{e.received_at:%Y-%m-%d %H:%M:%S}",
            e.source,
            e.bounce_type,
            e.contact_id or "-",
            mask_email(e.email or ""),
            e.status.value,
            e.attempts,
            (e.last_error if e.status is not EventStatus.DONE else e.outcome) or "",
        )
    print_table(events)


@app.command("show")
def events_show(event_id: int = typer.Argument(..., help="Event id.")) -> None:
    """Show one event with its payload and the audit of its steps."""
    import dataclasses

    from connector.logs import scrub

    async def fetch(store: Store) -> tuple[Event | None, list[AuditEntry]]:
        return await store.get_event(event_id), await store.audit_for_event(event_id)

    from connector.pipeline.outcome import from_audit

    event, steps = with_store(fetch)
    if event is None:
        raise InputError(f"no event {event_id}", hint="see `connector events list`")
    for name, value in dataclasses.asdict(event).items():
        typer.echo(f"{name:>16}: {visible(scrub(str(value)))}")
    for entry in steps:
        dry = " (dry run)" if entry.dry_run else ""
        typer.echo(f"  [{entry.id}] {visible(scrub(from_audit(entry).describe()))}{dry}")


@app.command("retry")
def events_retry(
    event_id: int | None = typer.Argument(None, help="Event id to queue again."),
    failed: bool = typer.Option(False, "--failed", help="Queue every failed and dead event."),
) -> None:
    """Queue an event (or every failed/dead one) for another try."""
    if (event_id is None) == (not failed):
        raise InputError("give an event id or --failed (not both)")
    count = with_store(lambda store: store.requeue(event_id, failed=failed))
    if event_id is not None and count == 0:
        raise InputError(
            f"no event {event_id} that can be retried", hint="see `connector events list`"
        )
    typer.echo(f"queued {count} event(s) again; `connector worker --once` processes them now")


def audit(
    contact: str | None = typer.Option(None, "--contact", help="Only this Keap contact id."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first."),
) -> None:
    """What was done (or planned, in dry run) to whom."""
    from connector.logs import scrub
    from connector.pipeline.outcome import from_audit

    rows = with_store(lambda store: store.list_audit(contact, limit))
    entries = table("action id", "time", "event", "contact", "what happened")
    for a in rows:
        said = from_audit(a).describe() + (" (dry run)" if a.dry_run else "")
        add_row(
            entries,
            a.id,
            f"{a.created_at:%Y-%m-%d %H:%M:%S}",
            a.event_id,
            a.contact_id,
            scrub(said),
        )
    print_table(entries)


def undo(action_id: int = typer.Argument(..., help="Action id from `connector audit`.")) -> None:
    """Put a blanked address back in its field (opt-outs cannot be reversed through the API)."""
    from connector import service
    from connector import undo as remedies

    loaded = settings()

    async def run() -> str:
        async with service.runtime(loaded, create_if_empty=False) as rt:
            return await remedies.undo(rt.store, rt.client, action_id)

    typer.echo(visible(run_async(run())))
