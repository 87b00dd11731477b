"""The policy file's shape: which keys it may hold and what each value may be (DESIGN.md 7).

Each value parser raises ``ValueError`` with a message a policy author can act on; pydantic
turns those into errors located at the key, and :mod:`connector.policy.load` words them and
adds the rule they belong to. The shapes here only check one table at a time; checks across
rules (conflicting tags) live in ``load``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator

from connector.bounces import VALID_TYPES_TEXT, BounceType, parse_bounce_type
from connector.durations import parse_duration
from connector.errors import BounceTypeError
from connector.keap.models import MARKETABLE_STATUSES, EmailStatus
from connector.policy.model import (
    DEFAULT_STATUS_MAP,
    Action,
    PolicySettings,
    When,
    address_domain,
)

MAX_COUNT = 1_000_000

# ---------------------------------------------------------------------------------------------
# Parsing values of the file

_WHEN = re.compile(r"\s*(always|exactly|at\s+least|more\s+than)\s*([0-9]*)\s*", re.I | re.A)
WHEN_FORMS = "'always', 'exactly N', 'at least N' or 'more than N'"


def parse_when(text: str) -> When:
    """Parse a count condition; raises ``ValueError`` with a message fit for a policy error."""
    found = _WHEN.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a count condition; use {WHEN_FORMS}")
    word = " ".join(found.group(1).lower().split())
    digits = found.group(2)
    if word == "always":
        if digits:
            raise ValueError(f"{text!r}: 'always' takes no number")
        return When("always", 1, None)
    if not digits:
        raise ValueError(f"{text!r}: {word!r} needs a number, e.g. '{word} 2'")
    number = int(digits)
    if number > MAX_COUNT:
        raise ValueError(f"{text!r}: the number must be at most {MAX_COUNT}")
    return _when_range(word, number, text)


def _when_range(word: str, number: int, text: str) -> When:
    canonical = f"{word} {number}"
    if word == "more than":
        return When(canonical, number + 1, None)
    if number < 1:
        raise ValueError(f"{text!r} can never match: the bounce being decided always counts as 1")
    if word == "exactly":
        return When(canonical, number, number)
    return When(canonical, number, None)


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what} as a string, got {_toml_type(value)}")
    return value


def _strings(value: object, what: str) -> list[str]:
    """A string or an array of strings: a single value need not be wrapped in brackets."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected {what} as a string or an array of strings")
    return [_string(item, what) for item in items]


def _toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        str: "a string",
    }
    return names.get(type(value), "a table" if isinstance(value, dict) else "a date or time")


def _v_bounce(value: object) -> tuple[BounceType, ...]:
    found: list[BounceType] = []
    unknown: list[str] = []
    for item in _strings(value, "bounce types"):
        try:
            found.append(parse_bounce_type(item))
        except BounceTypeError:
            unknown.append(repr(item))
    if unknown:
        raise ValueError(f"unknown bounce type {', '.join(unknown)}; use one of {VALID_TYPES_TEXT}")
    if not found:
        raise ValueError("name at least one bounce type")
    return tuple(dict.fromkeys(found))


def _v_tags(value: object) -> tuple[str, ...]:
    tags = [tag.strip() for tag in _strings(value, "tag names")]
    if not all(tags):
        raise ValueError("a tag name cannot be empty")
    return tuple(dict.fromkeys(tags))


def _v_tasks(value: object) -> tuple[str, ...]:
    tasks = [task.strip() for task in _strings(value, "task titles")]
    if not all(tasks):
        raise ValueError("a task title cannot be empty")
    return tuple(dict.fromkeys(tasks))


def _v_domains(value: object) -> tuple[str, ...]:
    """Exact domains, ``*.suffix`` or ``*``; stored as :func:`address_domain` spells them."""
    found: list[str] = []
    for item in _strings(value, "domains"):
        text = item.strip().lower().rstrip(".")
        wild = text.startswith("*.")
        name = text[2:] if wild else text
        if text != "*" and ("@" in name or not _DOMAIN.fullmatch(address_domain(f"x@{name}"))):
            raise ValueError(f"{item!r} is not a domain; use 'example.com', '*.example.com' or '*'")
        found.append(text if text == "*" else ("*." if wild else "") + address_domain(f"x@{name}"))
    return tuple(dict.fromkeys(found))


_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}", re.A)


def _v_action(value: object) -> Action:
    text = _string(value, "the action")
    try:
        return Action(text.strip().lower())
    except ValueError:
        choices = ", ".join(repr(action.value) for action in Action)
        raise ValueError(f"unknown action {text!r}; use one of {choices}") from None


def _v_when(value: object) -> When:
    return parse_when(_string(value, "a count condition"))


def _v_within(value: object) -> timedelta:
    return parse_duration(_string(value, "a duration"))


def _v_threshold(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number of bounces, got {_toml_type(value)}")
    if not 2 <= value <= MAX_COUNT:
        raise ValueError(
            f"{value} is out of range; use 2 to {MAX_COUNT} (at 1 every bounce would open one)"
        )
    return value


def _v_dedupe(value: object) -> timedelta:
    return parse_duration(_string(value, "a duration"), allow_zero=True)


def _v_title(value: object) -> str:
    title = _string(value, "the note title").strip()
    if not title:
        raise ValueError("the note title cannot be empty")
    return title


# A marketable status means the address is fine: mapping one to a bounce would act on healthy
# contacts, so only the others may be mapped.
_UNMARKETABLE = frozenset(str(status) for status in EmailStatus) - MARKETABLE_STATUSES


def _v_status(value: object) -> str:
    key = _string(value, "a Keap email status").strip().upper()
    if key in MARKETABLE_STATUSES:
        raise ValueError("a marketable status; mapping it would act on healthy addresses")
    if key not in _UNMARKETABLE:
        raise ValueError(f"not a Keap email status; use one of {', '.join(sorted(_UNMARKETABLE))}")
    return key


def _v_one_bounce(value: object) -> BounceType:
    return _v_bounce(_string(value, "a bounce type"))[0]


_StatusMap = dict[
    Annotated[str, PlainValidator(_v_status)],
    Annotated[BounceType, PlainValidator(_v_one_bounce)],
]


# ---------------------------------------------------------------------------------------------
# The file's shape


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RuleShape(_Strict):
    bounce: Annotated[tuple[BounceType, ...], PlainValidator(_v_bounce)]
    when: Annotated[When, PlainValidator(_v_when)] = When("always", 1, None)
    action: Annotated[Action, PlainValidator(_v_action)] = Action.NONE
    add_tags: Annotated[tuple[str, ...], PlainValidator(_v_tags)] = ()
    remove_tags: Annotated[tuple[str, ...], PlainValidator(_v_tags)] = ()
    note: bool = False
    within: Annotated[timedelta | None, PlainValidator(_v_within)] = None
    reset_on_engagement: bool = False
    task: Annotated[tuple[str, ...], PlainValidator(_v_tasks)] = ()
    domains: Annotated[tuple[str, ...], PlainValidator(_v_domains)] = ()
    exclude_domains: Annotated[tuple[str, ...], PlainValidator(_v_domains)] = ()
    notify: bool = False
    expire: Annotated[timedelta | None, PlainValidator(_v_within)] = None


# DESIGN 7a: the blocks a receiving server sends when it refuses the sender, not the address.
INCIDENT_BOUNCES = (
    BounceType.MAIL_BLOCK_GENERAL,
    BounceType.MAIL_BLOCK_KNOWN_SPAMMER,
    BounceType.MAIL_BLOCK_RELAY_DENIED,
    BounceType.MAIL_BLOCK_SPAM_DETECTED,
    BounceType.MAIL_BLOCK_ATTACHMENT_DETECTED,
)


class IncidentsShape(_Strict):
    bounce: Annotated[tuple[BounceType, ...], PlainValidator(_v_bounce)] = INCIDENT_BOUNCES
    threshold: Annotated[int, PlainValidator(_v_threshold)] = 10
    within: Annotated[timedelta, PlainValidator(_v_within)] = timedelta(hours=1)


class _SettingsIn(_Strict):
    dedupe_window: Annotated[timedelta, PlainValidator(_v_dedupe)] = PolicySettings.dedupe_window
    note_title: Annotated[str, PlainValidator(_v_title)] = PolicySettings.note_title
    protect_tags: Annotated[tuple[str, ...], PlainValidator(_v_tags)] = ()


class _SyncIn(_Strict):
    status_map: _StatusMap = dict(DEFAULT_STATUS_MAP)


class FileShape(_Strict):
    settings: _SettingsIn = _SettingsIn()
    rule: list[dict[str, Any]] = []
    sync: _SyncIn = _SyncIn()
    incidents: IncidentsShape | None = None
