"""Reversing what the connector did, where Keap allows it; the undo is itself a step on record.

A blanked address is put back in the field it was removed from, from the value the audit log
kept; a promotion is reversed by moving the bounced address back into EMAIL1; an expired
opt-out's re-opt-in (``reopt_in``) is reversed by opting the address out again. An opt-out is
not reversed: Keap lets the API re-opt-in an address only from a few manual statuses, never from a
bounce status, and mailing an address that bounced hurts the sender's reputation; a human must
decide that in Keap itself.

Every undo writes an ``undo`` step into the undone action's event (``undo:ACTION_ID``), so the
audit log, ``events show`` and the report all show it beside the step it reversed.
"""

from __future__ import annotations

from connector.errors import InputError
from connector.keap.client import KeapClient
from connector.keap.models import EmailAddress, EmailField
from connector.logs import mask_email
from connector.pipeline.executor import swapped
from connector.pipeline.outcome import Outcome, StepKind, StepRecord, from_audit, to_audit
from connector.pipeline.target import same_address
from connector.store import AuditEntry, Store


async def undo(store: Store, client: KeapClient, action_id: int) -> str:
    """Undo one audited action; returns what was done, or raises saying why it cannot be."""
    entry = await store.get_audit(action_id)
    if entry is None:
        raise InputError(f"no action {action_id}", hint="see `connector audit`")
    step = from_audit(entry)
    _check(step, entry, action_id)
    if step.kind is StepKind.PROMOTE:
        return await _demote(store, client, entry, step)
    if step.kind is StepKind.REOPT_IN:
        return await _opt_out_again(store, client, entry, step)
    return await _restore(store, client, entry, step)


def _check(step: StepRecord, entry: AuditEntry, action_id: int) -> None:
    if step.undone:
        raise InputError(f"action {action_id} was already undone")
    if step.outcome is not Outcome.DONE or entry.dry_run:
        shown = "planned (dry run)" if entry.dry_run else step.outcome.value
        raise InputError(f"action {action_id} is {shown}; nothing was changed in Keap")
    if step.kind is StepKind.OPT_OUT:
        raise InputError(
            f"action {action_id} opted an address out; Keap's API cannot opt a bounced address "
            "back in",
            hint="if the address is good again, opt it in by hand in Keap (contact > email status)",
        )
    if step.kind not in (StepKind.BLANK_EMAIL, StepKind.PROMOTE, StepKind.REOPT_IN):
        raise InputError(
            f"action {action_id} is a {step.kind.value} step; only a blanked, promoted or "
            "re-opted-in address can be undone here",
            hint="remove tags, notes or tasks in Keap if they are unwanted",
        )


async def _restore(store: Store, client: KeapClient, entry: AuditEntry, step: StepRecord) -> str:
    old = step.before or {}
    email, field = str(old.get("email") or ""), str(old.get("field") or "")
    if not email or not field:
        raise InputError(f"action {entry.id} did not record the address it removed")
    contact = await client.get_contact(entry.contact_id)
    occupant = contact.in_field(field)
    if occupant is not None and occupant.email:
        if same_address(occupant.email, email):
            await _record(store, entry, email, field, "already back")
            return f"{field} of contact {entry.contact_id} already holds {mask_email(email)}"
        raise InputError(
            f"{field} of contact {entry.contact_id} now holds another address; not overwriting it",
            hint="restore the old address by hand in Keap; it is in the audit log",
        )
    keep = [(a.email, a.field) for a in contact.email_addresses if a.email]
    await client.replace_email_addresses(entry.contact_id, [*keep, (email, field)])
    await _record(store, entry, email, field, "restored")
    return f"restored {mask_email(email)} to {field} of contact {entry.contact_id}"


async def _demote(store: Store, client: KeapClient, entry: AuditEntry, step: StepRecord) -> str:
    """Put a promoted contact's addresses back where they were: the bounced one in EMAIL1."""
    old = step.before or {}
    bounced, spare = old.get("email") or "", old.get("spare") or ""
    field = old.get("spare_field") or ""
    if not (bounced and spare and field):
        raise InputError(f"action {entry.id} did not record the addresses it moved")
    contact = await client.get_contact(entry.contact_id)
    first, moved = contact.in_field(EmailField.EMAIL1), contact.in_field(field)
    if holds(first, bounced) and holds(moved, spare):
        await _record(store, entry, bounced, EmailField.EMAIL1.value, "already back")
        return f"EMAIL1 of contact {entry.contact_id} already holds {mask_email(bounced)}"
    if not (holds(first, spare) and holds(moved, bounced)):
        raise InputError(
            f"the addresses of contact {entry.contact_id} changed since the promotion; "
            "not moving them",
            hint="put them back by hand in Keap; the audit log has both",
        )
    await client.replace_email_addresses(entry.contact_id, swapped(contact, field))
    await _record(store, entry, bounced, EmailField.EMAIL1.value, "restored")
    return (
        f"restored {mask_email(bounced)} to EMAIL1 and {mask_email(spare)} to {field} of "
        f"contact {entry.contact_id}"
    )


async def _opt_out_again(
    store: Store, client: KeapClient, entry: AuditEntry, step: StepRecord
) -> str:
    """An expired opt-out's re-opt-in reversed: Keap lets the API opt any address out."""
    email = (step.after or {}).get("email") or (step.before or {}).get("email") or ""
    if not email:
        raise InputError(f"action {entry.id} did not record the address it opted in")
    status = await client.set_email_opt_status(
        email, opted_in=False, reason=f"undo of bounce retest (action {entry.id})"
    )
    await _written(
        store,
        entry,
        before={"email": email, "status": (step.after or {}).get("status")},
        after={"email": email, "status": status.status, "result": "opted out again"},
    )
    return f"opted {mask_email(email)} out again (undo of the retest, action {entry.id})"


def holds(address: EmailAddress | None, email: str) -> bool:
    return address is not None and same_address(address.email, email)


async def _record(store: Store, entry: AuditEntry, email: str, field: str, how: str) -> None:
    await _written(
        store,
        entry,
        before={"field": field, "email": None},
        after={"field": field, "email": email, "result": how},
    )


async def _written(
    store: Store,
    entry: AuditEntry,
    *,
    before: dict[str, str | None],
    after: dict[str, str | None],
) -> None:
    """The undo's own audit row first, then the undone mark on the action it reversed."""
    record = StepRecord(StepKind.UNDO, str(entry.id), Outcome.DONE, before=before, after=after)
    detail = f"undo of action {entry.id}"
    await store.write_audit(
        to_audit(
            record,
            event_id=entry.event_id,
            contact_id=entry.contact_id,
            detail=detail,
            dry_run=False,
        )
    )
    await store.mark_undone(entry.id)
