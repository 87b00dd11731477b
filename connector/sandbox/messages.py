"""Requests, responses and errors as the sandbox's handlers see them.

Handlers are plain functions from a ``Request`` to a ``Response`` so they can be tested without
a socket and so the HTTP server stays a thin shell around them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote

# Keap's v2 API is built the Google-API way (update_mask, page_token, ``:applyTags``), so its
# Error ``status`` is assumed to carry the gRPC status name; only the 429 body is confirmed.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


# Everything but the characters that would change a path's shape once decoded.
_KEEP_DECODED = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "/?#%")


def decoded_path(path: str) -> str:
    """Each segment of a raw path decoded, but ``/ ? # %`` kept encoded.

    So an email's ``a/b@x.com`` in ``/emailAddresses/{email}/status`` stays one segment, as the
    spec's simple-style path parameter (RFC 6570) has it; ``contacts%3AapplyTags`` still matches.
    """
    return "/".join(quote(unquote(part), safe=_KEEP_DECODED) for part in path.split("/"))


@dataclass(frozen=True)
class Request:
    """One HTTP request; ``path`` is raw (percent-encoded) and carries no query string."""

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise ApiError(400, f"request body is not JSON: {exc}") from exc


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A Keap-style error answer; raised anywhere inside a handler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        return error_response(self.status, self.message)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, "application/json", dict(headers or {}))


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        "details": [],
    }


def error_response(status: int, message: str) -> Response:
    return json_response(status, error_body(status, message))


THROTTLED_BODY: dict[str, Any] = {
    "code": 429,
    "message": "Quota Exceeded",
    "status": "Request Throttled",
    "details": None,
}


def iso_ms(epoch_ms: int) -> str:
    """Keap's timestamp style: ISO-8601, UTC, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)
