"""The Keap REST v2 client: one method per endpoint the connector uses.

Every request goes through the same path: the process-wide rate limiter, fresh credentials, one
resend after a 401 when a token refresh may cure it, the retry policy, and ``keap_error`` as the
only way a failure leaves the client. Requests and their bodies follow Keap's official OpenAPI
spec; the unit tests check each one against it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlencode

import httpx
from pydantic import BaseModel, ValidationError

from connector.config import Settings
from connector.errors import (
    ConfigError,
    ConnectorError,
    KeapRequestError,
    OutcomeUnknownError,
    PagingStalledError,
    PermanentError,
)
from connector.keap.auth import Credentials
from connector.keap.models import (
    WRITABLE_EMAIL_FIELDS,
    Contact,
    EmailAddressStatus,
    Note,
    Page,
    Tag,
    TagCategory,
    Task,
    User,
    UserInfo,
    UserStatus,
)
from connector.keap.retry import RateLimiter, RetryPolicy, keap_error, shared_limiter

logger = logging.getLogger(__name__)

MISSING_TAG_RECHECK = 600.0

DEFAULT_CONTACT_FIELDS: tuple[str, ...] = (
    "id",
    "given_name",
    "family_name",
    "email_addresses",
    "tag_ids",
    "create_time",
    "update_time",
)
DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000
MAX_USERS_PAGE_SIZE = 100
TAG_BATCH_SIZE = 100
USER_AGENT = "keap-bounce-connector/0.1"

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass
class ClientStats:
    """Counters the metrics module reads; each HTTP request sent counts as one call."""

    calls: int = 0
    retries: int = 0
    throttled: int = 0
    errors: int = 0
    refreshes: int = 0


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: Any = None
    idempotent: bool = True

    @property
    def display_path(self) -> str:
        return "/rest/v2" + unquote(self.path)


def _segment(value: str) -> str:
    """One path segment, percent-encoded whole (``safe=""``): an email's ``/ ? # %`` (legal in
    its local part) stay inside the segment, as the spec's simple-style path parameter and
    Keap's own generated SDKs encode them, and cannot change the route."""
    return quote(value, safe="")


def _query(params: Sequence[tuple[str, str]]) -> str:
    # Keap documents filter operators percent-encoded (``%3D%3D``, ``%3B``); commas stay literal
    # because ``fields`` is a comma-delimited list (explode=false in the spec).
    return "?" + urlencode(list(params), quote_via=quote, safe=",") if params else ""


def _check_page_size(page_size: int, maximum: int = MAX_PAGE_SIZE) -> str:
    if not 1 <= page_size <= maximum:
        raise ValueError(f"page_size must be between 1 and {maximum}")
    return str(page_size)


def _never_sent(exc: httpx.TransportError) -> bool:
    """Failures before the request left, so even a non-idempotent write may be resent."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


def _is_user(user: User, info: UserInfo) -> bool:
    if info.sub and user.id == info.sub:
        return True
    if info.id and user.global_user_id == info.id:
        return True
    emails = {a.email.casefold() for a in user.email_addresses}
    return bool(info.email) and str(info.email).casefold() in emails


def _keap_time(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KeapClient:
    """Async client for ``{KEAP_API_BASE_URL}/rest/v2``; use as ``async with KeapClient(...)``.

    ``limiter`` defaults to the process-wide limiter at ``Settings.requests_per_second``;
    ``retry`` to ``RetryPolicy.from_settings``; ``transport`` replaces httpx's network layer.
    """

    def __init__(
        self,
        settings: Settings,
        credentials: Credentials,
        *,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._base = settings.rest_v2_url
        self._credentials = credentials
        self._limiter = limiter or shared_limiter(settings.requests_per_second)
        self._retry = retry or RetryPolicy.from_settings(settings)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.keap_timeout_seconds),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )
        self.stats = ClientStats()
        self._tags: dict[tuple[str, str | None], Tag] = {}
        self._tag_lock = asyncio.Lock()
        self._missing_tags: dict[str, float] = {}  # name -> monotonic time it was not found
        self._user_id: str | None = settings.keap_user_id
        self._user_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"KeapClient(base_url={self._base!r}, mode={self._credentials.mode!r})"

    async def __aenter__(self) -> KeapClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def keep_credentials_alive(self) -> bool:
        """Renew credentials that would die unused (a refresh token near Keap's 45 days)."""
        return await self._credentials.keep_alive()

    # --- contacts -------------------------------------------------------------------------

    async def get_contact(
        self, contact_id: str, fields: Sequence[str] = DEFAULT_CONTACT_FIELDS
    ) -> Contact:
        """One contact with its email addresses and each address's opt status."""
        call = _Call("GET", f"/contacts/{_segment(contact_id)}", (("fields", ",".join(fields)),))
        return await self._fetch(call, Contact)

    async def iter_contacts(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        filter: str | None = None,
        fields: Sequence[str] = DEFAULT_CONTACT_FIELDS,
        order_by: str | None = None,
        start_page_token: str | None = None,
    ) -> AsyncIterator[Page[Contact]]:
        """Pages of contacts; checkpoint a page's ``next_page_token`` to resume after it."""
        params = [("page_size", _check_page_size(page_size)), ("fields", ",".join(fields))]
        params += [(k, v) for k, v in (("filter", filter), ("order_by", order_by)) if v]
        async for page in self._pages("/contacts", params, "contacts", Contact, start_page_token):
            yield page

    async def find_contacts_by_email(
        self, email: str, fields: Sequence[str] = DEFAULT_CONTACT_FIELDS
    ) -> list[Contact]:
        """Contacts holding exactly ``email`` (Keap's filter would also match ``*`` wildcards)."""
        found: list[Contact] = []
        async for page in self.iter_contacts(
            page_size=100, filter=f"email=={email}", fields=fields
        ):
            found += [c for c in page.items if c.address(email) is not None]
        return found

    async def replace_email_addresses(
        self,
        contact_id: str,
        keep: Sequence[tuple[str, str]],
        fields: Sequence[str] = DEFAULT_CONTACT_FIELDS,
    ) -> Contact:
        """Set the contact's addresses to exactly ``keep`` (email, field); Keap drops the rest.

        This is how one address is blanked without touching the others. It is safe to repeat.
        """
        slots = [email_field for _, email_field in keep]
        if any(s not in WRITABLE_EMAIL_FIELDS for s in slots) or len(set(slots)) != len(slots):
            raise ValueError("keep needs distinct fields among EMAIL1, EMAIL2, EMAIL3")
        body = {"email_addresses": [{"email": e, "field": str(f)} for e, f in keep]}
        params = (("update_mask", "email_addresses"), ("fields", ",".join(fields)))
        call = _Call("PATCH", f"/contacts/{_segment(contact_id)}", params, body)
        return await self._fetch(call, Contact)

    # --- email address status -------------------------------------------------------------

    async def iter_email_statuses(
        self,
        *,
        statuses: Sequence[str] = (),
        opted_in: bool | None = None,
        emails: Sequence[str] = (),
        page_size: int = DEFAULT_PAGE_SIZE,
        order_by: str | None = None,
        start_page_token: str | None = None,
    ) -> AsyncIterator[Page[EmailAddressStatus]]:
        """Pages of per-address statuses, e.g. every ``HARD_BOUNCE`` address for the backfill."""
        clauses = [f"statuses=={','.join(statuses)}"] if statuses else []
        clauses += [f"emails=={','.join(emails)}"] if emails else []
        clauses += [f"opted_in=={str(opted_in).lower()}"] if opted_in is not None else []
        params = [("page_size", _check_page_size(page_size))]
        params += [(k, v) for k, v in (("filter", ";".join(clauses)), ("order_by", order_by)) if v]
        pages = self._pages(
            "/emailAddresses", params, "email_addresses", EmailAddressStatus, start_page_token
        )
        async for page in pages:
            yield page

    async def get_email_status(self, email: str) -> EmailAddressStatus:
        call = _Call("GET", f"/emailAddresses/{_segment(email)}/status")
        return await self._fetch(call, EmailAddressStatus)

    async def set_email_opt_status(
        self, email: str, *, opted_in: bool, reason: str
    ) -> EmailAddressStatus:
        """Opt an address in or out; the status belongs to the address, for every contact."""
        if not reason.strip():
            raise ValueError("Keap requires a reason for an opt status change")
        body = {"opted_in": opted_in, "reason": reason}
        call = _Call("PATCH", f"/emailAddresses/{_segment(email)}/status", body=body)
        return await self._fetch(call, EmailAddressStatus)

    # --- tags -----------------------------------------------------------------------------

    async def find_or_create_tag(self, name: str, category_name: str | None = None) -> Tag:
        """The tag named exactly ``name`` (in ``category_name`` when given), created if missing.

        Cached for the life of the client. Creating is not idempotent, so an unknown outcome is
        settled here by looking the tag up again before creating it a second time.
        """
        key = (name, category_name)
        async with self._tag_lock:
            if key not in self._tags:
                self._tags[key] = await self._find_or_create_tag(name, category_name)
            return self._tags[key]

    async def tag_ids_named(self, names: Sequence[str]) -> set[str]:
        """The ids of the tags with these names that exist in Keap; never creates a tag.

        Found ids are cached for the client's life (like ``find_or_create_tag``); a name Keap
        does not have is looked up again after ``MISSING_TAG_RECHECK`` seconds, so a protect tag
        an admin creates later is honoured without a restart. One call per name, then none.
        """
        found: set[str] = set()
        async with self._tag_lock:
            for name in names:
                cached = self._tags.get((name, None))
                if cached is not None:
                    found.add(cached.id)
                    continue
                missed = self._missing_tags.get(name)
                if missed is not None and time.monotonic() - missed < MISSING_TAG_RECHECK:
                    continue
                tags = await self._list_named("/tags", name, "tags", Tag)
                if tags:
                    self._tags[(name, None)] = tags[0]
                    self._missing_tags.pop(name, None)
                    found.add(tags[0].id)
                else:
                    self._missing_tags[name] = time.monotonic()
        return found

    async def forget_tag(self, name: str, stale_id: str, category_name: str | None = None) -> None:
        """Drop the cached tag ``name`` if it still has ``stale_id`` (Keap answered 404 for it:
        the tag was deleted or replaced in Keap); the next ``find_or_create_tag`` looks it up
        again. A newer id cached meanwhile by another event is kept."""
        key = (name, category_name)
        async with self._tag_lock:
            cached = self._tags.get(key)
            if cached is not None and cached.id == stale_id:
                del self._tags[key]

    async def _find_or_create_tag(self, name: str, category_name: str | None) -> Tag:
        category = await self._find_or_create_category(category_name) if category_name else None

        async def find() -> Tag | None:
            tags = await self._list_named("/tags", name, "tags", Tag)
            wanted = [t for t in tags if category is None or t.category_id == category.id]
            return wanted[0] if wanted else None

        async def create() -> Tag:
            body: dict[str, Any] = {"name": name}
            if category is not None:
                body["category"] = {"id": category.id}
            return await self._fetch(_Call("POST", "/tags", body=body, idempotent=False), Tag)

        return await self._find_or_create(find, create)

    async def _find_or_create_category(self, name: str) -> TagCategory:
        async def find() -> TagCategory | None:
            found = await self._list_named("/tags/categories", name, "tag_categories", TagCategory)
            return found[0] if found else None

        async def create() -> TagCategory:
            call = _Call("POST", "/tags/categories", body={"name": name}, idempotent=False)
            return await self._fetch(call, TagCategory)

        return await self._find_or_create(find, create)

    async def _list_named(self, path: str, name: str, key: str, model: type[M]) -> list[M]:
        params = [("filter", f"name=={name}"), ("page_size", "100")]
        found: list[M] = []
        async for page in self._pages(path, params, key, model, None):
            found += [item for item in page.items if getattr(item, "name", None) == name]
        return found

    @staticmethod
    async def _find_or_create(
        find: Callable[[], Awaitable[T | None]], create: Callable[[], Awaitable[T]]
    ) -> T:
        """Look up, else create; when the create's outcome is unknown, or Keap answers 409 because
        another process (a second replica) created the same name meanwhile, look up once more."""
        found = await find()
        if found is not None:
            return found
        try:
            return await create()
        except OutcomeUnknownError:
            found = await find()
            return found if found is not None else await create()
        except KeapRequestError as exc:
            if exc.keap is None or exc.keap.status != HTTPStatus.CONFLICT:
                raise
            found = await find()
            if found is None:
                raise
            return found

    async def apply_tag(
        self, tag_id: str, contact_ids: Iterable[str], *, turn_taken: bool = False
    ) -> dict[str, str]:
        """Apply one tag to many contacts, 100 a call; returns Keap's per-contact result.

        ``turn_taken``: the caller already waited for this call's turn (``wait_turn``), so the
        first attempt of the first call does not wait again.
        """
        results: dict[str, str] = {}
        for index, batch in enumerate(self._batches(contact_ids)):
            call = _Call(
                "POST", f"/tags/{_segment(tag_id)}/contacts:applyTags", body={"contact_ids": batch}
            )
            response = await self._request(call, turn_taken=turn_taken and index == 0)
            data = self._decode(call, response)
            raw = data.get("results") if isinstance(data, dict) else None
            results.update({str(k): str(v) for k, v in (raw or {}).items()})
        return results

    async def remove_tag(
        self, tag_id: str, contact_ids: Iterable[str], *, turn_taken: bool = False
    ) -> None:
        """Remove one tag from many contacts, 100 a call; removing an absent tag is harmless."""
        for index, batch in enumerate(self._batches(contact_ids)):
            path = f"/tags/{_segment(tag_id)}/contacts:removeTags"
            call = _Call("POST", path, body={"contact_ids": batch})
            await self._request(call, turn_taken=turn_taken and index == 0)

    async def wait_turn(self) -> None:
        """Wait for one request's turn at the rate limiter, to spend it on a later call made
        with ``turn_taken=True``: a tag batch stays open for other events until its turn."""
        await self._limiter.acquire()

    @staticmethod
    def _batches(contact_ids: Iterable[str]) -> list[list[str]]:
        ids = _unique(contact_ids)
        return [ids[i : i + TAG_BATCH_SIZE] for i in range(0, len(ids), TAG_BATCH_SIZE)]

    # --- notes, tasks, users --------------------------------------------------------------

    async def create_note(
        self,
        contact_id: str,
        *,
        title: str,
        text: str,
        user_id: str | None = None,
        note_type: str | None = None,
    ) -> Note:
        """Write a note on the contact.

        Not idempotent: if the answer is lost this raises ``OutcomeUnknownError`` instead of
        resending; check ``list_notes`` for the note before writing it again.
        """
        body: dict[str, Any] = {"title": title, "text": text}
        body["user_id"] = user_id or await self.resolve_user_id()
        if note_type:
            body["type"] = note_type
        path = f"/contacts/{_segment(contact_id)}/notes"
        return await self._fetch(_Call("POST", path, body=body, idempotent=False), Note)

    async def list_notes(self, contact_id: str, *, page_size: int = 100) -> list[Note]:
        """Every note on the contact: how a caller settles a note write of unknown outcome."""
        path = f"/contacts/{_segment(contact_id)}/notes"
        params = [("page_size", _check_page_size(page_size))]
        notes: list[Note] = []
        async for page in self._pages(path, params, "notes", Note, None):
            notes += page.items
        return notes

    async def create_task(
        self,
        contact_id: str,
        *,
        title: str,
        description: str | None = None,
        due_time: datetime | None = None,
        priority: str | None = None,
        task_type: str | None = None,
        user_id: str | None = None,
    ) -> Task:
        """Create a task about the contact, assigned to ``user_id`` (else the resolved user).

        Not idempotent: a lost answer raises ``OutcomeUnknownError`` instead of a resend; check
        ``list_tasks`` for it before creating it again.
        """
        body: dict[str, Any] = {"title": title, "contact_id": contact_id}
        body["assigned_to_user_id"] = user_id or await self.resolve_user_id()
        optional = {"description": description, "priority": priority, "type": task_type}
        body.update({k: v for k, v in optional.items() if v})
        if due_time is not None:
            body["due_time"] = _keap_time(due_time)
        return await self._fetch(_Call("POST", "/tasks", body=body, idempotent=False), Task)

    async def list_tasks(self, contact_id: str, *, page_size: int = 100) -> list[Task]:
        """Every task about the contact: how a caller settles a task write of unknown outcome."""
        params = [
            ("filter", f"contact_id=={contact_id}"),
            ("page_size", _check_page_size(page_size)),
        ]
        tasks: list[Task] = []
        async for page in self._pages("/tasks", params, "tasks", Task, None):
            tasks += page.items
        return tasks

    async def resolve_user_id(self) -> str:
        """The Keap user notes and tasks are written as: KEAP_USER_ID, else discovered once."""
        if self._user_id:
            return self._user_id
        async with self._user_lock:
            if not self._user_id:
                self._user_id = await self._discover_user_id()
            return self._user_id

    async def _discover_user_id(self) -> str:
        """Match userinfo against ``/users``: userinfo's ``id`` is the *global* user id (spec),
        which Keap does not accept as a note's ``user_id``; the app's own id is in ``/users``.
        """
        info = await self._userinfo()
        users = await self._users()
        for user in users:
            if info is not None and _is_user(user, info):
                return user.id
        if info is not None and info.sub and not users:
            return info.sub
        active = [u for u in users if u.status in (None, UserStatus.ACTIVE)]
        ranked = sorted(active or users, key=lambda u: not u.admin)
        if not ranked:
            raise ConfigError("found no Keap user to write notes and tasks as; set KEAP_USER_ID")
        return ranked[0].id

    async def _userinfo(self) -> UserInfo | None:
        try:
            return await self._fetch(_Call("GET", "/oauth/connect/userinfo"), UserInfo)
        except PermanentError:
            return None

    async def _users(self) -> list[User]:
        params = (("page_size", str(MAX_USERS_PAGE_SIZE)),)
        try:
            raw = await self._items("/users", params, "users")
        except PermanentError:
            return []
        return [User.model_validate(u) for u in raw]

    # --- plumbing -------------------------------------------------------------------------

    async def _pages(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        key: str,
        model: type[M],
        start_page_token: str | None,
    ) -> AsyncIterator[Page[M]]:
        """Follow ``next_page_token`` to the end; a token handed out twice is an error.

        Ending quietly there would make a half-read listing look complete (a sync would call
        itself done), so :class:`PagingStalledError` is raised before the page that repeats.
        """
        token, seen = start_page_token, {start_page_token}
        while True:
            call = _Call("GET", path, tuple(params) + ((("page_token", token),) if token else ()))
            data = await self._json(call)
            items = [self._parse(model, item, call) for item in data.get(key) or []]
            next_token = data.get("next_page_token") or None
            if next_token is not None and next_token in seen:
                raise PagingStalledError(
                    f"{path}: Keap handed out page token {next_token!r} twice; "
                    "the listing makes no progress"
                )
            yield Page(items=items, page_token=token, next_page_token=next_token)
            if next_token is None:
                return
            seen.add(next_token)
            token = next_token

    async def _items(self, path: str, params: Sequence[tuple[str, str]], key: str) -> list[Any]:
        data = await self._json(_Call("GET", path, tuple(params)))
        items = data.get(key)
        return items if isinstance(items, list) else []

    async def _fetch(self, call: _Call, model: type[M]) -> M:
        response = await self._request(call)
        return self._parse(model, self._decode(call, response), call, response)

    async def _json(self, call: _Call) -> dict[str, Any]:
        response = await self._request(call)
        data = self._decode(call, response)
        if not isinstance(data, dict):
            raise self._malformed(call, response)
        return data

    def _decode(self, call: _Call, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._malformed(call, response) from None

    def _parse(
        self, model: type[M], data: Any, call: _Call, response: httpx.Response | None = None
    ) -> M:
        try:
            return model.model_validate(data)
        except ValidationError:
            logger.warning("Keap sent a %s that does not parse", model.__name__)
            raise self._malformed(call, response) from None

    def _malformed(self, call: _Call, response: httpx.Response | None) -> ConnectorError:
        self.stats.errors += 1
        return keap_error(
            call.method,
            call.display_path,
            status=response.status_code if response is not None else None,
            headers=response.headers if response is not None else None,
            body=response.text if response is not None else "",
            idempotent=call.idempotent,
            malformed=True,
        )

    async def _request(self, call: _Call, *, turn_taken: bool = False) -> httpx.Response:
        prepaid = [turn_taken]  # only the first attempt may use a turn waited for already

        async def attempt() -> httpx.Response:
            paid, prepaid[0] = prepaid[0], False
            return await self._attempt(call, paid)

        return await self._retry.run(attempt, self._on_retry)

    async def _attempt(self, call: _Call, paid: bool = False) -> httpx.Response:
        response, sent = await self._send_once(call, paid)
        if response.status_code == 401 and await self._credentials.on_unauthorized(sent):
            response, _ = await self._send_once(call)
        if response.status_code < 400:
            return response
        self.stats.errors += 1
        if response.status_code == 429:
            self.stats.throttled += 1
        raise keap_error(
            call.method,
            call.display_path,
            status=response.status_code,
            headers=response.headers,
            body=response.text,
            idempotent=call.idempotent,
        )

    async def _send_once(
        self, call: _Call, paid: bool = False
    ) -> tuple[httpx.Response, dict[str, str]]:
        if not paid:
            await self._limiter.acquire()
        headers = await self._credentials.headers()
        self.stats.refreshes = getattr(self._credentials, "refreshes", 0)
        self.stats.calls += 1
        url = self._base + call.path + _query(call.params)
        try:
            response = await self._http.request(call.method, url, headers=headers, json=call.body)
        except httpx.TransportError as exc:
            self.stats.errors += 1
            raise keap_error(
                call.method,
                call.display_path,
                status=None,
                body=type(exc).__name__,
                idempotent=call.idempotent,
                sent=not _never_sent(exc),
            ) from exc
        self._limiter.observe(response.headers, response.status_code)
        logger.debug("%s %s -> %s", call.method, call.display_path, response.status_code)
        return response, headers

    def _on_retry(self, error: BaseException, attempt: int, wait: float) -> None:
        self.stats.retries += 1
        logger.warning("Keap call failed (%s); retry %d in %.1fs", error, attempt, wait)
