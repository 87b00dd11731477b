"""Typed views of what the connector reads from Keap REST v2.

Keap adds enum values without notice (its generated SDKs carry an ``unknown_default_open_api``
catch-all), so enum-like fields are plain ``str`` and the ``StrEnum`` classes only name the values
we know, for comparisons. A status we have never seen must reach the policy engine intact, not
fail the whole contact read. For the same reason unknown fields are ignored, numeric ids are
turned into strings (v2 documents ids as strings but shows numbers in its examples), and a
timestamp Keap formats in a way we cannot parse becomes ``None`` instead of an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError


class EmailStatus(StrEnum):
    """Known values of ``email_opt_status`` / ``status``; compare, never validate, with these."""

    UNENGAGED_MARKETABLE = "UNENGAGED_MARKETABLE"
    SINGLE_OPT_IN = "SINGLE_OPT_IN"
    DOUBLE_OPT_IN = "DOUBLE_OPT_IN"
    CONFIRMED = "CONFIRMED"
    UNENGAGED_NON_MARKETABLE = "UNENGAGED_NON_MARKETABLE"
    NON_MARKETABLE = "NON_MARKETABLE"
    LOCKDOWN = "LOCKDOWN"
    BOUNCE = "BOUNCE"
    HARD_BOUNCE = "HARD_BOUNCE"
    MANUAL = "MANUAL"
    ADMIN = "ADMIN"
    SYSTEM = "SYSTEM"
    LIST_UNSUBSCRIBE = "LIST_UNSUBSCRIBE"
    FEEDBACK = "FEEDBACK"
    SPAM = "SPAM"
    INVALID = "INVALID"
    DEACTIVATED = "DEACTIVATED"


BOUNCE_STATUSES: frozenset[str] = frozenset({EmailStatus.BOUNCE, EmailStatus.HARD_BOUNCE})
# The statuses Keap mails; every other known status keeps an address from marketing email.
MARKETABLE_STATUSES: frozenset[str] = frozenset(
    {
        EmailStatus.UNENGAGED_MARKETABLE,
        EmailStatus.SINGLE_OPT_IN,
        EmailStatus.DOUBLE_OPT_IN,
        EmailStatus.CONFIRMED,
    }
)


def known_status(value: str | None) -> EmailStatus | None:
    """The enum member for ``value``, or ``None`` for a status Keap added after this code."""
    try:
        return EmailStatus(value) if value is not None else None
    except ValueError:
        return None


class EmailField(StrEnum):
    """The contact field an address sits in; v2 writes need it to say which one to keep."""

    EMAIL1 = "EMAIL1"
    EMAIL2 = "EMAIL2"
    EMAIL3 = "EMAIL3"
    UNSPECIFIED = "EMAIL_FIELD_UNSPECIFIED"


WRITABLE_EMAIL_FIELDS: frozenset[str] = frozenset(
    {EmailField.EMAIL1, EmailField.EMAIL2, EmailField.EMAIL3}
)


def _lenient_time(value: object) -> object:
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _DATETIME.validate_python(value)
    except ValidationError:
        return None


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)

KeapTime = Annotated[datetime | None, BeforeValidator(_lenient_time)]


class KeapModel(BaseModel):
    """Shared parsing rules: tolerate extra fields and numbers where Keap documents strings."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


def _none_as_empty(value: object) -> object:
    return "" if value is None else value


class EmailAddress(KeapModel):
    """One address of a contact; Keap may send ``"email": null`` for a slot it holds empty."""

    email: Annotated[str, BeforeValidator(_none_as_empty)] = ""
    field: str = EmailField.UNSPECIFIED
    email_opt_status: str | None = None
    is_opt_in: bool | None = None
    opt_in_reason: str | None = None

    @property
    def known_status(self) -> EmailStatus | None:
        return known_status(self.email_opt_status)


def _without_empty_addresses(value: object) -> object:
    """An address Keap sends empty (``"email": null`` or ``""``) is no address: leave it out."""
    if not isinstance(value, list):
        return [] if value is None else value
    return [item for item in value if not isinstance(item, dict) or item.get("email")]


class Contact(KeapModel):
    id: str
    given_name: str | None = None
    family_name: str | None = None
    email_addresses: Annotated[list[EmailAddress], BeforeValidator(_without_empty_addresses)] = []
    tag_ids: list[str] = []
    create_time: KeapTime = None
    update_time: KeapTime = None

    def address(self, email: str) -> EmailAddress | None:
        """The entry holding ``email``; Keap compares addresses case-insensitively."""
        wanted = email.strip().casefold()
        return next((a for a in self.email_addresses if a.email.casefold() == wanted), None)

    def in_field(self, email_field: str) -> EmailAddress | None:
        return next((a for a in self.email_addresses if a.field == email_field), None)


class EmailAddressStatus(KeapModel):
    email: str
    opted_in: bool = False
    status: str = ""
    create_time: KeapTime = None
    last_click_time: KeapTime = None
    last_open_time: KeapTime = None
    last_sent_time: KeapTime = None

    @property
    def known_status(self) -> EmailStatus | None:
        return known_status(self.status)

    @property
    def last_engagement_time(self) -> datetime | None:
        """Latest open or click: a bounce older than this one no longer says the address is dead."""
        times = [t for t in (self.last_open_time, self.last_click_time) if t is not None]
        return max(times) if times else None


class CategoryRef(KeapModel):
    id: str


class Tag(KeapModel):
    id: str
    name: str = ""
    description: str | None = None
    category: CategoryRef | None = None
    create_time: KeapTime = None
    update_time: KeapTime = None

    @property
    def category_id(self) -> str | None:
        return self.category.id if self.category is not None else None


class TagCategory(KeapModel):
    id: str
    name: str = ""
    description: str | None = None


class Note(KeapModel):
    id: str
    contact_id: str | None = None
    title: str | None = None
    text: str | None = None
    type: str | None = None
    created_by_user_id: str | None = None
    create_time: KeapTime = None
    update_time: KeapTime = None


class TaskPriority(StrEnum):
    CRITICAL = "CRITICAL"
    ESSENTIAL = "ESSENTIAL"
    NONESSENTIAL = "NONESSENTIAL"


class Task(KeapModel):
    id: str
    title: str | None = None
    description: str | None = None
    type: str | None = None
    priority: str | None = None
    completed: bool | None = None
    contact_id: str | None = None
    assigned_to_user_id: str | None = None
    due_time: KeapTime = None
    create_time: KeapTime = None


class UserStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INVITED = "INVITED"
    INACTIVE = "INACTIVE"
    NOT_A_USER = "NOT_A_USER"


class User(KeapModel):
    id: str
    global_user_id: str | None = None
    email_addresses: list[EmailAddress] = []
    given_name: str | None = None
    family_name: str | None = None
    status: str | None = None
    admin: bool | None = None


class UserInfo(KeapModel):
    """``GET /oauth/connect/userinfo``: who the credentials act as."""

    id: str | None = None
    sub: str | None = None
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    is_admin: bool | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_page_token`` is what a caller checkpoints to resume."""

    items: Sequence[T]
    page_token: str | None
    next_page_token: str | None = None

    @property
    def is_last(self) -> bool:
        return not self.next_page_token
