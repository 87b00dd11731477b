"""Reversing what the connector did, where Keap allows it.

A blanked address is put back in the field it was removed from, from the value the audit log
kept. An opt-out is not reversed: Keap lets the API re-opt-in an address only from a few manual
statuses, never from a bounce status, and mailing an address that bounced hurts the sender's
reputation; a human must decide that in Keap itself.
"""

from __future__ import annotations

import json

from connector.errors import InputError
from connector.keap.client import KeapClient
from connector.logs import mask_email
from connector.store import StepStatus, Store


async def undo(store: Store, client: KeapClient, action_id: int) -> str:
    """Undo one audited action; returns what was done, or raises saying why it cannot be."""
    entry = await store.get_audit(action_id)
    if entry is None:
        raise InputError(f"no action {action_id}", hint="see `connector audit`")
    if entry.undone_at is not None:
        raise InputError(f"action {action_id} was already undone")
    if entry.status is not StepStatus.DONE or entry.dry_run:
        raise InputError(f"action {action_id} is {entry.status.value}; nothing was changed in Keap")
    if entry.kind == "opt_out":
        raise InputError(
            f"action {action_id} opted an address out; Keap's API cannot opt a bounced address "
            "back in",
            hint="if the address is good again, opt it in by hand in Keap (contact > email status)",
        )
    if entry.kind != "blank_email":
        raise InputError(
            f"action {action_id} is a {entry.kind}; only a blanked address can be undone here",
            hint="remove tags, notes or tasks in Keap if they are unwanted",
        )
    return await _restore(store, client, action_id, entry.contact_id, entry.before_value or "")


async def _restore(
    store: Store, client: KeapClient, action_id: int, contact_id: str, before: str
) -> str:
    old = json.loads(before)
    email, field = str(old["email"]), str(old["field"])
    contact = await client.get_contact(contact_id)
    occupant = contact.in_field(field)
    if occupant is not None and occupant.email:
        if occupant.email.casefold() == email.casefold():
            await store.mark_undone(action_id)
            return f"{field} of contact {contact_id} already holds {mask_email(email)}"
        raise InputError(
            f"{field} of contact {contact_id} now holds another address; not overwriting it",
            hint="restore the old address by hand in Keap; it is in the audit log",
        )
    keep = [(a.email, a.field) for a in contact.email_addresses if a.email]
    await client.replace_email_addresses(contact_id, [*keep, (email, field)])
    await store.mark_undone(action_id)
    return f"restored {mask_email(email)} to {field} of contact {contact_id}"
