"""Keyset paging, filters and ordering shared by the sandbox's list endpoints.

A page token names the last key served (not an offset), so paging stays exact while the
connector patches contacts between pages. The token also carries a fingerprint of the filter
and order, so a client that drops its filter on page two gets a 400 instead of wrong data.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.sandbox.messages import ApiError, Request

DEFAULT_PAGE_SIZE = 1000
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|>=|<=|>|<)(.*)$")
_KEAP_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class Clause:
    name: str
    op: str
    value: str


@dataclass(frozen=True)
class ListQuery:
    page_size: int
    after: Any
    descending: bool
    order: str
    clauses: tuple[Clause, ...]
    fingerprint: str


def parse_list_query(request: Request, orders: Sequence[str], max_page: int = 1000) -> ListQuery:
    filter_text = request.param("filter") or ""
    order, descending = _order(request.param("order_by") or "", orders)
    fingerprint = hashlib.sha256(f"{filter_text}|{order}|{descending}".encode()).hexdigest()[:16]
    return ListQuery(
        page_size=_page_size(request.param("page_size"), max_page),
        after=decode_token(request.param("page_token") or "", fingerprint),
        descending=descending,
        order=order,
        clauses=parse_filter(filter_text),
        fingerprint=fingerprint,
    )


def parse_filter(text: str) -> tuple[Clause, ...]:
    clauses = []
    for part in text.split(";"):
        if not part.strip():
            continue
        match = _CLAUSE.match(part)
        if match is None:
            raise ApiError(400, f"Invalid filter clause {part!r}: expected field==value")
        clauses.append(Clause(match.group(1), match.group(2), match.group(3).strip()))
    return tuple(clauses)


def _order(text: str, orders: Sequence[str]) -> tuple[str, bool]:
    words = [w for w in re.split(r"[\s,:]+", text.strip()) if w]
    if not words:
        return orders[0], False
    if words[0] not in orders or len(words) > 2:
        raise ApiError(400, f"Invalid order_by {text!r}: use one of {', '.join(orders)}")
    direction = words[1].lower() if len(words) == 2 else "asc"
    if direction not in ("asc", "desc"):
        raise ApiError(400, f"Invalid order_by direction {direction!r}: use asc or desc")
    return words[0], direction == "desc"


def _page_size(raw: str | None, max_page: int) -> int:
    if raw in (None, "", "0"):
        return min(DEFAULT_PAGE_SIZE, max_page)
    try:
        size = int(raw)
    except ValueError as exc:
        raise ApiError(400, f"Invalid page_size {raw!r}") from exc
    if not 0 < size <= max_page:
        raise ApiError(400, f"page_size must be between 0 and {max_page}")
    return size


def encode_token(key: Any, fingerprint: str) -> str:
    raw = json.dumps([fingerprint, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> Any:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        stamp, key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "Invalid page_token") from exc
    if stamp != fingerprint:
        raise ApiError(400, "page_token does not belong to this filter and order_by")
    return tuple(key) if isinstance(key, list) else key


def page_of(
    keys: Sequence[Any], query: ListQuery, accept: Callable[[Any], bool]
) -> tuple[list[Any], str]:
    """The next page of accepted keys after ``query.after``, and the token for the one after."""
    if query.descending:
        start = len(keys) if query.after is None else bisect.bisect_left(keys, query.after)
        indices: range = range(start - 1, -1, -1)
    else:
        start = 0 if query.after is None else bisect.bisect_right(keys, query.after)
        indices = range(start, len(keys))
    served: list[Any] = []
    for index in indices:
        key = keys[index]
        if accept(key):
            if len(served) == query.page_size:
                return served, encode_token(served[-1], query.fingerprint)
            served.append(key)
    return served, ""


def keap_time_ms(clause: Clause) -> int:
    """Keap insists on ISO-8601 with milliseconds and a zone (``2026-01-01T00:00:00.000Z``)."""
    if not _KEAP_TIME.match(clause.value):
        raise ApiError(
            400,
            f"{clause.name} must be ISO-8601 with milliseconds and a timezone, "
            f"e.g. 2026-01-01T00:00:00.000Z; got {clause.value!r}",
        )
    return int(datetime.fromisoformat(clause.value).timestamp() * 1000)


def text_matches(value: str, pattern: str) -> bool:
    """Keap's ``==``: case-insensitive, with a trailing ``*`` meaning starts-with."""
    if pattern.endswith("*"):
        return value.lower().startswith(pattern[:-1].lower())
    return value.lower() == pattern.lower()


def id_set(clause: Clause) -> set[int]:
    try:
        return {int(part) for part in clause.value.split(",") if part.strip()}
    except ValueError as exc:
        raise ApiError(400, f"{clause.name} must be a comma-separated list of ids") from exc


def compare(left: int, op: str, right: int) -> bool:
    return {
        "==": left == right,
        "!=": left != right,
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[op]


def require_equality(clause: Clause) -> None:
    if clause.op != "==":
        raise ApiError(400, f"filter field {clause.name} supports only ==")
