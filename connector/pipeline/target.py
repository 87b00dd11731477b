"""Which address an event acts on, and the evidence for it (DESIGN 1a).

A destructive step (opt out, blank) is only ever taken on an address there is evidence for: the
address Keap posted, when the contact holds it; else, with no address posted, the one address
Keap marks as bounced, or EMAIL1 (Keap mails the primary address). A posted address the contact
does not hold (changed since, or another contact's) is evidence of nothing: the plan's tags,
notes and tasks still run, its destructive step is skipped and every output says why.

Addresses compare with ``str.lower()``, never ``casefold()``: ``straße`` is not ``strasse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.keap.models import BOUNCE_STATUSES, Contact, EmailAddress, EmailField


class Evidence(StrEnum):
    POSTED = "posted address"
    NOT_ON_CONTACT = "posted address not on the contact"
    BOUNCE_STATUS = "picked: {field} (no address posted; the one address in a bounce status)"
    EMAIL1 = "picked: EMAIL1 (no address posted)"
    ONLY_ADDRESS = "picked: {field} (no address posted; EMAIL1 is empty)"
    EARLIER_ATTEMPT = "the address an earlier attempt acted on"

    def text(self, field: str) -> str:
        return self.value.format(field=field)


@dataclass(frozen=True)
class Target:
    """The contact and the address an event is about, with the evidence that chose it.

    ``on_contact`` is false when the address is not one of the contact's: destructive steps
    are then skipped (``posted address not on the contact``).
    """

    contact: Contact
    address: EmailAddress
    evidence: Evidence

    @property
    def on_contact(self) -> bool:
        return self.evidence is not Evidence.NOT_ON_CONTACT and self.address.field in (
            EmailField.EMAIL1,
            EmailField.EMAIL2,
            EmailField.EMAIL3,
        )

    @property
    def reason(self) -> str:
        return self.evidence.text(self.address.field)


def same_address(one: str, other: str) -> bool:
    return one.strip().lower() == other.strip().lower()


def held(contact: Contact, email: str) -> EmailAddress | None:
    """The contact's entry for ``email``, compared as DESIGN 1a says."""
    return next(
        (a for a in contact.email_addresses if a.email and same_address(a.email, email)), None
    )


def pick(contact: Contact, posted: str | None) -> Target | None:
    """The target of an event about ``contact``; ``None`` when no address can be chosen."""
    if posted:
        found = held(contact, posted)
        if found is not None:
            return Target(contact, found, Evidence.POSTED)
        stranger = EmailAddress(email=posted, field=EmailField.UNSPECIFIED)
        return Target(contact, stranger, Evidence.NOT_ON_CONTACT)
    usable = [a for a in contact.email_addresses if a.email]
    bounced = [a for a in usable if a.email_opt_status in BOUNCE_STATUSES]
    if len(bounced) == 1:
        return Target(contact, bounced[0], Evidence.BOUNCE_STATUS)
    first = contact.in_field(EmailField.EMAIL1)
    if first is not None and first.email:
        return Target(contact, first, Evidence.EMAIL1)
    if len(usable) == 1:
        return Target(contact, usable[0], Evidence.ONLY_ADDRESS)
    return None


def pinned(contact: Contact, email: str, field: str) -> Target:
    """The address an earlier attempt chose, even if an earlier blank removed it since."""
    found = held(contact, email)
    address = found if found is not None else EmailAddress(email=email, field=field)
    return Target(contact, address, Evidence.EARLIER_ATTEMPT)
