"""The ASGI app Keap's "HTTP Post" calls (DESIGN.md section 6, a contract).

Keap's HTTP Post is unsigned and, as far as anyone knows, sent once. So the order of work is:
authenticate with the shared key, bound and parse the body, store the event durably, and only
then answer 202. Anything the app cannot store it answers 503, so Keap never sees a success for
an event that was not kept. Posted values are hints: the worker re-reads the contact from Keap.

Errors are 4xx with a one-line JSON reason; no input produces a 5xx.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from email_validator import EmailNotValidError, validate_email
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connector.access_log import AccessLog, Summarised
from connector.bounces import BounceType, parse_bounce_type
from connector.errors import BounceTypeError, CallbackError, StoreUnavailableError
from connector.logs import mask_email
from connector.metrics import Metrics, QueueGauges
from connector.store import NewEvent, Store

if TYPE_CHECKING:
    from connector.policy.reload import PolicyHolder

log = logging.getLogger("connector.webhook")

MAX_BODY_BYTES = 64 * 1024
READY_CHECK_SECONDS = 2.0
MAX_FIELDS = 500
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"

_CONTACT_FIELDS = ("contactid", "contact_id", "id", "contact0id")
_EMAIL_FIELDS = ("email", "contact0email")
_TYPE_FIELDS = ("bounce_type", "bouncetype")
_CONTACT_ID = re.compile(r"^[0-9]{1,19}$")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,253}$")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Callback:
    """What a callback says, once parsed and checked."""

    bounce_type: BounceType
    contact_id: str | None
    email: str | None
    keap_count: int | None
    fields: dict[str, str]
    raw: str

    def dedupe_key(self) -> str:
        """Same contact (or address) and bounce type: the policy's dedupe window applies."""
        subject = self.contact_id or f"email:{self.email}"
        return f"webhook:{subject}:{self.bounce_type.value}"

    def to_event(self) -> NewEvent:
        return NewEvent(
            source="webhook",
            bounce_type=self.bounce_type.value,
            contact_id=self.contact_id,
            email=self.email,
            keap_count=self.keap_count,
            dedupe_key=self.dedupe_key(),
            raw=self.raw,
        )


def parse_callback(path_type: str | None, content_type: str | None, body: bytes) -> Callback:
    """Turn a callback's body into a ``Callback``; raises ``CallbackError`` saying what is wrong.

    The body is kept as Keap sent it (``raw``), so the store holds exactly what arrived.
    """
    text = _text(body)
    fields = _decode(content_type, text)
    _check_encodable(path_type, fields)
    lowered = {name.lower(): value for name, value in fields.items()}
    bounce_type = _bounce_type(path_type, lowered)
    contact_id = _contact_id(lowered)
    email = _email(lowered)
    if contact_id is None and email is None:
        raise CallbackError(
            "the callback names no contact: send contactId=~Contact.Id~ (or Email=~Contact.Email~)"
        )
    return Callback(bounce_type, contact_id, email, _count(lowered), fields, text)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _text(body: bytes) -> str:
    """The body as text; a NUL is refused here because no database text column can hold it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackError("the body is not valid UTF-8") from None
    if "\x00" in text:
        raise CallbackError("the body contains a NUL character")
    return text


def _decode(content_type: str | None, text: str) -> dict[str, str]:
    if _media_type(content_type) == _JSON:
        return _json_fields(text)
    try:
        # Percent-escapes that are not UTF-8 (``%FF``, an encoded surrogate ``%ED%A0%80``)
        # become U+FFFD, as browsers do: a stray byte in a field Keap added must not cost the
        # bounce, and no surrogate can come out of this decoder.
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise CallbackError(f"the form has more than {MAX_FIELDS} fields") from None
    return dict(pairs)


def _refuse_constant(name: str) -> None:
    raise CallbackError(f"the JSON body holds {name}, which is not a JSON number")


def _json_fields(text: str) -> dict[str, str]:
    """The JSON object's fields as text, every number kept as the literal that was sent.

    Numbers are never converted: a 5,000-digit integer would hit Python's int limit, a huge
    float becomes ``inf``; the literal text goes through the same checks as a form value
    (a contact id is 1-19 digits, a count 1-9). ``NaN`` and ``Infinity`` are not JSON.
    """
    try:
        data = json.loads(text, parse_int=str, parse_float=str, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise CallbackError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise CallbackError("the JSON body must be an object of name/value pairs")
    if len(data) > MAX_FIELDS:
        raise CallbackError(f"the body has more than {MAX_FIELDS} fields")
    fields: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str | None):  # numbers arrive as their literal text
            raise CallbackError(f"field {name[:40]!a} must be a string or a number")
        fields[name] = "" if value is None else value
    return fields


def _check_encodable(path_type: str | None, fields: Mapping[str, str]) -> None:
    """Refuse text that is not Unicode: a lone surrogate (``"\\ud800"`` in JSON) can be held
    by a Python string but not encoded for the store, a log line or the 400 that names it."""
    values = [path_type or "", *fields.keys(), *fields.values()]
    for value in values:
        if not value.isascii() and _SURROGATE.search(value):
            raise CallbackError(
                f"the body holds a lone UTF-16 surrogate ({_shown(value)}), which is not text"
            )


def _first(fields: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = fields.get(name, "").strip()
        if value:
            return value
    return None


def _bounce_type(path_type: str | None, fields: Mapping[str, str]) -> BounceType:
    raw = path_type if path_type is not None else _first(fields, _TYPE_FIELDS)
    if raw is None:
        raise CallbackError(
            "no bounce type: use /keap/bounce/<type> or a bounce_type field",
            hint=f"valid types: {', '.join(t.value for t in BounceType)}",
        )
    try:
        return parse_bounce_type(raw)
    except BounceTypeError as exc:
        raise CallbackError(exc.message, hint=exc.hint) from None


def _unresolved(value: str) -> bool:
    return value.startswith("~") and value.endswith("~")


def _contact_id(fields: Mapping[str, str]) -> str | None:
    value = _first(fields, _CONTACT_FIELDS)
    if value is None:
        return None
    if _unresolved(value):
        raise CallbackError(f"the contact id is Keap's unfilled merge field {value[:40]!a}")
    if not _CONTACT_ID.match(value):
        raise CallbackError(f"the contact id {value[:40]!a} is not a Keap contact id")
    return value.lstrip("0") or "0"


def _email(fields: Mapping[str, str]) -> str | None:
    """The posted address, lower-cased; a value that is not an address is refused (DESIGN 1a).

    Anything but a plain address (``<a@b.c>``, ``mailto:a@b.c``, ``a@``) could be taken for no
    address at all, and then a destructive step would pick one: better Keap's admin sees a 400.
    Syntax only (``email-validator``, the library pydantic uses): no DNS lookup on this path.
    """
    value = _first(fields, _EMAIL_FIELDS)
    if value is None or _unresolved(value):
        return None
    if not _EMAIL.match(value):
        raise CallbackError(f"the email {_shown(value)} is not an email address")
    try:
        validate_email(
            value, check_deliverability=False, allow_smtputf8=True, test_environment=True
        )
    except EmailNotValidError as exc:
        raise CallbackError(f"the email {_shown(value)} is not an email address: {exc}") from None
    return value.lower()


def _shown(value: str) -> str:
    """A bounded, escaped echo of a bad value: it goes back to the caller and into logs."""
    return ascii(value[:60])


def _count(fields: Mapping[str, str]) -> int | None:
    value = fields.get("count", "").strip()
    if not value or _unresolved(value):
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:  # "²" is a digit to str
        raise CallbackError(f"count {value[:20]!a} is not a whole number")
    return int(value)


# --- the app ---------------------------------------------------------------------------------


@dataclass
class WebhookConfig:
    secret: str
    dedupe_window: timedelta
    require_https: bool = False


def _error(status: int, reason: str) -> Response:
    """A one-line JSON reason; ASCII-escaped, so no text in it can fail to encode."""
    return Response(json.dumps({"error": reason}), status_code=status, media_type=_JSON)


def _query_key(query_string: bytes) -> str:
    """``key`` from the raw query string, without building a full query mapping per request."""
    if b"key=" not in query_string:
        return ""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return next((value for name, value in pairs if name == "key"), "")


def _check_key(request: Request, secret: bytes) -> Response | None:
    """Constant-time comparison; an empty key never matches, even an empty configured secret."""
    given = _query_key(request.scope["query_string"]) or request.headers.get("x-connector-key", "")
    if given and secret and hmac.compare_digest(given.encode("utf-8", "replace"), secret):
        return None
    return _error(401, "missing or wrong key (?key=... or X-Connector-Key)")


def _check_transport(request: Request, require_https: bool) -> Response | None:
    if not require_https:
        return None
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    if proto.split(",")[0].strip().lower() == "https":
        return None
    return _error(403, "HTTPS is required (CONNECTOR_REQUIRE_HTTPS=true)")


def _check_content_type(request: Request) -> Response | None:
    if _media_type(request.headers.get("content-type")) in ("", _FORM, _JSON):
        return None
    return _error(415, f"content type must be {_FORM} or {_JSON}")


_TOO_LARGE = f"the body is over {MAX_BODY_BYTES // 1024} KiB"


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is over the limit (read no further than the limit)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    config: WebhookConfig,
    store: Store,
    metrics: Metrics,
    *,
    ready: Callable[[], Any] | None = None,
    policy: PolicyHolder | None = None,
    on_event: Callable[[], None] | None = None,
    keap_stats: Callable[[], tuple[int, int]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """Build the app; ``on_event`` wakes an in-process worker, ``ready`` checks credentials.

    ``policy``: the reloadable policy file; its ``dedupe_window`` replaces the config's, and a
    new file that did not load shows in ``/readyz`` as ``"policy": "error: ..."`` (still ready:
    the rules read before stay in force).

    ``clock`` (monotonic seconds) paces what the app does by time: log summaries and the
    queue gauges' refresh.

    ``extra_routes``: pages outside the webhook contract, such as the OAuth2 redirect
    (``connector.oauth_redirect``); they bring their own checks.
    """
    secret = config.secret.encode("utf-8")
    not_stored = Summarised(log, "callbacks not stored (503)", level=logging.ERROR, clock=clock)

    async def bounce(request: Request) -> Response:
        response = (
            _check_transport(request, config.require_https)
            or _check_key(request, secret)
            or _check_content_type(request)
            or await _parse_and_store(request)
        )
        if response.status_code >= 300:
            metrics.callbacks_rejected.labels(code=str(response.status_code)).inc()
        return response

    async def _parse_and_store(request: Request) -> Response:
        try:
            body = await _read_body(request)
            if body is None:
                return _error(413, _TOO_LARGE)
            callback = parse_callback(
                request.path_params.get("bounce_type"), request.headers.get("content-type"), body
            )
        except CallbackError as exc:
            return _error(400, str(exc))
        except ClientDisconnect:
            return _error(400, "the client went away before sending the whole body")
        except Exception:  # the contract: no input is a 5xx; a parser bug still shows in the log
            log.exception("callback refused: the parser failed on its body")
            return _error(400, "the body could not be read")
        return await _store(callback)

    def _dedupe_window() -> timedelta:
        return config.dedupe_window if policy is None else policy.current.settings.dedupe_window

    async def _store(callback: Callback) -> Response:
        try:
            added = await store.add_event(callback.to_event(), _dedupe_window())
        except StoreUnavailableError as exc:
            not_stored.note(
                exc.message, "callback NOT stored, answering 503 so it is not lost: %s", exc
            )
            return _error(503, "the event could not be stored; try again")
        status = "duplicate" if added.duplicate else "queued"
        metrics.received(callback.bounce_type.value, status)
        log.info(
            "callback %s: event %s, %s, contact %s, %s",
            status,
            added.event_id,
            callback.bounce_type.value,
            callback.contact_id or "-",
            mask_email(callback.email) if callback.email else "-",
        )
        if on_event is not None and not added.duplicate:
            on_event()
        return Response(
            b'{"event_id":%d,"status":"%s"}' % (added.event_id, status.encode()),
            status_code=202,
            media_type=_JSON,
        )

    not_ready = Summarised(log, "readiness checks failed", level=logging.WARNING, clock=clock)
    checked: list[tuple[float, str | None]] = []
    checking = asyncio.Lock()

    async def store_readiness() -> str | None:
        """DESIGN 6 for the store, checked at most once per ``READY_CHECK_SECONDS``: a flood
        of probes costs one check (one small committed write), never one each. The reason
        shown names no host, path or secret; the detail goes to the log."""
        async with checking:
            if checked and clock() - checked[0][0] < READY_CHECK_SECONDS:
                return checked[0][1]
            found = await store.readiness()
            reason = None if found is None else found[0]
            if found is not None:
                not_ready.note(found[0], "not ready: the store is %s: %s", *found)
            checked[:] = [(clock(), reason)]
            return reason

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        problems = []
        store_problem = await store_readiness()
        if store_problem is not None:
            problems.append(f"store: {store_problem}")
        if ready is not None:
            problem = await ready()
            if problem:
                problems.append(f"keap: {problem}")
        shown: dict[str, Any] = {}
        if policy is not None and policy.problem is not None:
            shown["policy"] = policy.problem
        if problems:
            return JSONResponse(
                {"status": "not ready", "problems": problems, **shown}, status_code=503
            )
        return JSONResponse({"status": "ready", **shown})

    queue_gauges = QueueGauges(store.queue_stats, metrics, clock=clock)

    async def metrics_view(_: Request) -> Response:
        await queue_gauges.scrape()  # cached; refreshed in the background, never per scrape
        if keap_stats is not None:
            metrics.observe_keap(*keap_stats())
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    app = Starlette(
        routes=[
            Route("/keap/bounce/{bounce_type}", bounce, methods=["POST"]),
            Route("/keap/bounce", bounce, methods=["POST"]),
            Route("/keap/bounce/", bounce, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_view, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *extra_routes,
        ]
    )
    # A redirect is no use to Keap's HTTP Post: answer every path directly.
    app.router.redirect_slashes = False
    app.add_middleware(AccessLog, clock=clock)
    return app


def openapi_document() -> dict[str, Any]:
    """The webhook's own contract, for users' tooling and for schemathesis."""
    reply = {
        "description": "stored durably",
        "content": {
            _JSON: {
                "schema": {
                    "type": "object",
                    "required": ["event_id", "status"],
                    "properties": {
                        "event_id": {"type": "integer"},
                        "status": {"enum": ["queued", "duplicate"]},
                    },
                }
            }
        },
    }
    fields = {
        "type": "object",
        "properties": {
            "contactId": {"type": "string"},
            "Email": {"type": "string"},
            "bounce_type": {"type": "string"},
            "count": {"type": "string"},
        },
    }
    errors = {
        code: {"description": text}
        for code, text in {
            "400": "bad body or unknown bounce type",
            "401": "missing or wrong key",
            "413": "body over 64 KiB",
            "415": "unsupported content type",
            "503": "the event could not be stored",
        }.items()
    }
    operation = {
        "parameters": [
            {"name": "key", "in": "query", "schema": {"type": "string"}},
            {"name": "X-Connector-Key", "in": "header", "schema": {"type": "string"}},
        ],
        "requestBody": {"content": {_FORM: {"schema": fields}, _JSON: {"schema": fields}}},
        "responses": {"202": reply, **errors},
    }
    typed = {
        **operation,
        "parameters": [
            *operation["parameters"],
            {"name": "bounce_type", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "keap-bounce-connector webhook", "version": "1"},
        "paths": {
            "/keap/bounce/{bounce_type}": {"post": typed},
            "/keap/bounce": {"post": operation},
        },
    }
