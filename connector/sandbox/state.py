"""The sandbox's in-memory Keap account and the rules Keap applies when it changes.

Opt status is kept per address (``addresses``), never per contact, because in Keap every
contact that shares an address shares its status. Contacts and addresses use ``__slots__`` and
tuples so 100,000 seeded contacts fit in a few tens of megabytes and start in about a second.
All access goes through ``lock``: the HTTP server runs one thread per connection.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.sandbox.messages import ApiError, now_ms

EMAIL_FIELDS = ("EMAIL1", "EMAIL2", "EMAIL3")
STATUSES = (
    "UNENGAGED_MARKETABLE",
    "SINGLE_OPT_IN",
    "DOUBLE_OPT_IN",
    "CONFIRMED",
    "UNENGAGED_NON_MARKETABLE",
    "NON_MARKETABLE",
    "LOCKDOWN",
    "BOUNCE",
    "HARD_BOUNCE",
    "MANUAL",
    "ADMIN",
    "SYSTEM",
    "LIST_UNSUBSCRIBE",
    "FEEDBACK",
    "SPAM",
    "INVALID",
    "DEACTIVATED",
)
MARKETABLE = frozenset({"UNENGAGED_MARKETABLE", "SINGLE_OPT_IN", "DOUBLE_OPT_IN", "CONFIRMED"})
# Keap's documented rule: an opt-in through the API revives only these statuses.
REOPTABLE = frozenset(
    {"UNENGAGED_MARKETABLE", "UNENGAGED_NON_MARKETABLE", "NON_MARKETABLE", "MANUAL"}
)
# An explicit opt-out turns these into MANUAL; bounces, complaints and the like keep their status.
OPT_OUT_TO_MANUAL = MARKETABLE | {"UNENGAGED_NON_MARKETABLE", "NON_MARKETABLE"}
_MAX_EMAIL_LENGTH = {"EMAIL1": 75, "EMAIL2": 100, "EMAIL3": 100}


class Contact:
    __slots__ = ("create_ms", "emails", "family_name", "given_name", "id", "update_ms")

    def __init__(
        self,
        contact_id: int,
        given_name: str,
        family_name: str,
        emails: tuple[tuple[str, str], ...],
        create_ms: int,
        update_ms: int,
    ) -> None:
        self.id = contact_id
        self.given_name = given_name
        self.family_name = family_name
        self.emails = emails  # (field, email) pairs, ordered by field
        self.create_ms = create_ms
        self.update_ms = update_ms


class Address:
    __slots__ = ("create_ms", "email", "opt_in_reason", "status")

    def __init__(self, email: str, status: str, create_ms: int, opt_in_reason: str = "") -> None:
        self.email = email
        self.status = status
        self.create_ms = create_ms
        self.opt_in_reason = opt_in_reason

    @property
    def opted_in(self) -> bool:
        return self.status in MARKETABLE


@dataclass
class Tag:
    id: int
    name: str
    description: str
    category_id: int | None
    create_ms: int
    contacts: set[int] = field(default_factory=set)


@dataclass
class TagCategory:
    id: int
    name: str
    description: str
    create_ms: int


@dataclass
class Note:
    id: int
    contact_id: int
    user_id: int
    title: str
    type: str
    text: str
    pinned: bool
    create_ms: int


@dataclass
class Task:
    id: int
    contact_id: int | None
    assigned_to_user_id: int
    created_by_user_id: int
    fields: dict[str, Any]
    create_ms: int


@dataclass
class User:
    id: int
    given_name: str
    family_name: str
    email: str
    admin: bool


@dataclass(frozen=True)
class EmailItem:
    """One entry of a PATCH's ``email_addresses`` list."""

    field: str
    email: str
    opt_in_reason: str = ""


class SandboxState:
    """Everything the sandbox's Keap account holds."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.contacts: dict[int, Contact] = {}
        self.contact_ids: list[int] = []
        self.addresses: dict[str, Address] = {}
        self.sorted_emails: list[str] = []
        self.email_contacts: dict[str, tuple[int, ...]] = {}
        self.tags: dict[int, Tag] = {}
        self.categories: dict[int, TagCategory] = {}
        self.notes: dict[int, Note] = {}
        self.tasks: dict[int, Task] = {}
        self.users: dict[int, User] = {}
        self.version = 0  # bumped on every contact change; invalidates cached sort orders
        self._next_id = {"tag": 100, "category": 10, "note": 5000, "task": 7000}

    # --- building -------------------------------------------------------------------------

    def load(self, contacts: Iterable[Contact], addresses: Iterable[Address]) -> None:
        """Bulk insert for seeding: one sort at the end instead of one insert per row."""
        with self.lock:
            for contact in contacts:
                self.contacts[contact.id] = contact
            for address in addresses:
                self.addresses[address.email.lower()] = address
            self._reindex()

    def _reindex(self) -> None:
        self.contact_ids = sorted(self.contacts)
        self.sorted_emails = sorted(self.addresses)
        index: dict[str, tuple[int, ...]] = {}
        for cid in self.contact_ids:
            for _, email in self.contacts[cid].emails:
                key = email.lower()
                index[key] = (*index.get(key, ()), cid)
        self.email_contacts = index
        self.version += 1

    def add_contact(
        self, given_name: str, family_name: str, emails: Sequence[EmailItem]
    ) -> Contact:
        with self.lock:
            contact_id = (self.contact_ids[-1] + 1) if self.contact_ids else 1
            stamp = now_ms()
            contact = Contact(contact_id, given_name, family_name, (), stamp, stamp)
            self.contacts[contact_id] = contact
            self.contact_ids.append(contact_id)
            self.set_emails(contact_id, emails)
            return contact

    def add_user(self, user: User) -> None:
        with self.lock:
            self.users[user.id] = user

    def new_id(self, kind: str) -> int:
        with self.lock:
            self._next_id[kind] += 1
            return self._next_id[kind]

    # --- contacts and addresses ---------------------------------------------------------------

    def contact(self, contact_id: str | int) -> Contact:
        try:
            found = self.contacts.get(int(contact_id))
        except ValueError:
            found = None
        if found is None:
            raise ApiError(404, f"Contact {contact_id} not found")
        return found

    def address(self, email: str) -> Address | None:
        return self.addresses.get(email.lower())

    def contacts_with(self, email: str) -> tuple[int, ...]:
        return self.email_contacts.get(email.lower(), ())

    def set_emails(self, contact_id: int, items: Sequence[EmailItem]) -> Contact:
        """Replace a contact's addresses; any address left out of ``items`` is removed."""
        with self.lock:
            contact = self.contact(contact_id)
            _check_email_items(items)
            for _, old in contact.emails:
                self._unlink(old, contact.id)
            for item in items:
                self._ensure_address(item.email, item.opt_in_reason)
                key = item.email.lower()
                if contact.id not in self.email_contacts.get(key, ()):
                    self.email_contacts[key] = (*self.email_contacts.get(key, ()), contact.id)
            contact.emails = tuple(sorted((i.field, i.email) for i in items))
            contact.update_ms = max(now_ms(), contact.update_ms + 1)
            self.version += 1
            return contact

    def _unlink(self, email: str, contact_id: int) -> None:
        key = email.lower()
        remaining = tuple(c for c in self.email_contacts.get(key, ()) if c != contact_id)
        if remaining:
            self.email_contacts[key] = remaining
        else:
            self.email_contacts.pop(key, None)

    def _ensure_address(self, email: str, opt_in_reason: str) -> Address:
        address = self.address(email)
        if address is None:
            # Keap leaves an address added through the API non-marketable unless opted in.
            status = "SINGLE_OPT_IN" if opt_in_reason else "NON_MARKETABLE"
            address = Address(email, status, now_ms(), opt_in_reason)
            self.addresses[email.lower()] = address
            bisect.insort(self.sorted_emails, email.lower())
        elif opt_in_reason and address.status in REOPTABLE:
            address.status = "SINGLE_OPT_IN"
            address.opt_in_reason = opt_in_reason
        return address

    def set_opt_in(self, email: str, opted_in: bool, reason: str) -> Address:
        """Keap's opt-in/opt-out rules for ``PATCH /emailAddresses/{email}/status``."""
        with self.lock:
            address = self.address(email)
            if address is None:
                raise ApiError(404, f"Email address {email} not found")
            if opted_in and address.status in REOPTABLE:
                address.status = "SINGLE_OPT_IN"
                address.opt_in_reason = reason
            elif not opted_in and address.status in OPT_OUT_TO_MANUAL:
                address.status = "MANUAL"
            return address

    def set_status(self, email: str, status: str, *, touch_contacts: bool = False) -> Address:
        """What Keap itself does when mail bounces: only the inspection API calls this."""
        if status not in STATUSES:
            raise ApiError(400, f"unknown email status {status!r}")
        with self.lock:
            address = self.address(email)
            if address is None:
                address = Address(email, status, now_ms())
                self.addresses[email.lower()] = address
                bisect.insort(self.sorted_emails, email.lower())
            address.status = status
            if touch_contacts:
                for cid in self.contacts_with(email):
                    self.contacts[cid].update_ms = now_ms()
                self.version += 1
            return address

    # --- tags ---------------------------------------------------------------------------------

    def tag(self, tag_id: str | int) -> Tag:
        try:
            found = self.tags.get(int(tag_id))
        except ValueError:
            found = None
        if found is None:
            raise ApiError(404, f"Tag {tag_id} not found")
        return found

    def tag_ids_of(self, contact_id: int) -> list[int]:
        return [t.id for t in self.tags.values() if contact_id in t.contacts]

    def create_tag(self, name: str, description: str, category_id: str | None) -> Tag:
        with self.lock:
            if not name.strip():
                raise ApiError(400, "Tag name is required")
            if any(t.name == name for t in self.tags.values()):
                raise ApiError(409, f"A tag named {name!r} already exists")
            category = None
            if category_id is not None:
                category = self.category(category_id).id
            tag = Tag(self.new_id("tag"), name[:255], description, category, now_ms())
            self.tags[tag.id] = tag
            return tag

    def apply_tag(self, tag_id: str, contact_ids: Sequence[str]) -> dict[str, str]:
        with self.lock:
            tag = self.tag(tag_id)
            results: dict[str, str] = {}
            for raw in contact_ids:
                cid = _as_int(raw)
                if cid is None or cid not in self.contacts:
                    results[raw] = "CONTACT_NOT_FOUND"
                elif cid in tag.contacts:
                    results[raw] = "DUPLICATE"
                else:
                    tag.contacts.add(cid)
                    results[raw] = "SUCCESS"
            return results

    def remove_tag(self, tag_id: str, contact_ids: Sequence[str]) -> None:
        with self.lock:
            tag = self.tag(tag_id)
            for raw in contact_ids:
                cid = _as_int(raw)
                if cid is not None:
                    tag.contacts.discard(cid)

    def category(self, category_id: str | int) -> TagCategory:
        found = self.categories.get(_as_int(category_id) or -1)
        if found is None:
            raise ApiError(404, f"Tag category {category_id} not found")
        return found

    def create_category(self, name: str, description: str) -> TagCategory:
        with self.lock:
            if not name.strip():
                raise ApiError(400, "Tag category name is required")
            if any(c.name == name for c in self.categories.values()):
                raise ApiError(409, f"A tag category named {name!r} already exists")
            category = TagCategory(self.new_id("category"), name, description, now_ms())
            self.categories[category.id] = category
            return category

    # --- notes, tasks, users ------------------------------------------------------------------

    def user(self, user_id: str | int, what: str) -> User:
        found = self.users.get(_as_int(user_id) or -1)
        if found is None:
            raise ApiError(400, f"{what} {user_id} is not a user of this app")
        return found

    def create_note(self, contact_id: str, payload: dict[str, Any]) -> Note:
        with self.lock:
            contact = self.contact(contact_id)
            user = self.user(payload.get("user_id", ""), "user_id")
            title, kind = str(payload.get("title") or ""), str(payload.get("type") or "")
            if not title and not kind:
                raise ApiError(400, "A value for either title or type is required")
            note = Note(
                id=self.new_id("note"),
                contact_id=contact.id,
                user_id=user.id,
                title=title,
                type=kind,
                text=str(payload.get("text") or ""),
                pinned=bool(payload.get("is_pinned")),
                create_ms=now_ms(),
            )
            self.notes[note.id] = note
            return note

    def notes_of(self, contact_id: int) -> list[Note]:
        return [n for n in self.notes.values() if n.contact_id == contact_id]

    def create_task(self, payload: dict[str, Any], creator: int) -> Task:
        with self.lock:
            user = self.user(payload.get("assigned_to_user_id", ""), "assigned_to_user_id")
            contact_id = None
            if payload.get("contact_id") not in (None, ""):
                contact_id = self.contact(str(payload["contact_id"])).id
            if not str(payload.get("title") or "").strip():
                raise ApiError(400, "Task title is required")
            task = Task(self.new_id("task"), contact_id, user.id, creator, dict(payload), now_ms())
            self.tasks[task.id] = task
            return task

    def tasks_of(self, contact_id: int) -> list[Task]:
        return [t for t in self.tasks.values() if t.contact_id == contact_id]


def _as_int(raw: str | int) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _check_email_items(items: Sequence[EmailItem]) -> None:
    """Refuse what Keap refuses, and what the connector must never send."""
    seen: set[str] = set()
    for item in items:
        if item.field not in EMAIL_FIELDS:
            raise ApiError(400, f"email_addresses.field must be one of {', '.join(EMAIL_FIELDS)}")
        if item.field in seen:
            raise ApiError(400, f"email_addresses lists {item.field} twice")
        seen.add(item.field)
        if not item.email:
            raise ApiError(400, f"{item.field}: email is empty; leave the item out to remove it")
        local, _, domain = item.email.partition("@")
        if not local or "." not in domain or " " in item.email:
            raise ApiError(400, f"{item.field}: {item.email!r} is not a valid email address")
        if len(item.email) > _MAX_EMAIL_LENGTH[item.field]:
            raise ApiError(400, f"{item.field}: email longer than {_MAX_EMAIL_LENGTH[item.field]}")
