"""``/_sandbox/...``: what tests and the demo use to look inside and to steer the sandbox.

The connector never calls these. They need no credentials: the sandbox only listens on
127.0.0.1 and holds made-up data.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from connector.sandbox.api_activity import note_json, task_json, user_json
from connector.sandbox.api_contacts import CONTACT_FIELDS, contact_json
from connector.sandbox.api_email import address_json
from connector.sandbox.api_tags import category_json, tag_json
from connector.sandbox.auth import OAuthError
from connector.sandbox.messages import ApiError, Request, Response, error_response, json_response
from connector.sandbox.state import EmailItem, SandboxState, Tag

if TYPE_CHECKING:
    from connector.sandbox.app import SandboxApp

_ALL_FIELDS = frozenset(CONTACT_FIELDS)
_TAG_MEMBER_LIMIT = 5000
_FULL_DUMP_LIMIT = 1000


class Inspection:
    def __init__(self, app: SandboxApp) -> None:
        self.app = app

    def handle(self, request: Request) -> Response:
        routes = {
            ("GET", "/_sandbox/state"): self.state,
            ("GET", "/_sandbox/stats"): self.stats,
            ("POST", "/_sandbox/stats/reset"): self.reset_stats,
            ("GET", "/_sandbox/faults"): self.faults,
            ("POST", "/_sandbox/faults"): self.set_faults,
            ("POST", "/_sandbox/auth/revoke"): self.revoke,
            ("POST", "/_sandbox/auth/expire"): self.expire,
            ("POST", "/_sandbox/auth/code"): self.code,
            ("GET", "/_sandbox/credentials"): self.credentials,
            ("POST", "/_sandbox/throttle/reset"): self.reset_throttle,
            ("POST", "/_sandbox/email-status"): self.set_email_status,
            ("POST", "/_sandbox/contacts"): self.add_contact,
        }
        handler = routes.get((request.method, request.path.rstrip("/")))
        if handler is None:
            return error_response(404, f"No inspection endpoint {request.method} {request.path}")
        try:
            return handler(request)
        except ApiError as exc:
            return exc.response()

    def state(self, request: Request) -> Response:
        state = self.app.state
        with state.lock:
            if request.param("contact_id"):
                return json_response(200, contact_detail(state, request.param("contact_id") or ""))
            if request.param("email"):
                return json_response(200, email_detail(state, request.param("email") or ""))
            everything = (
                request.param("contacts") == "all" or len(state.contacts) <= _FULL_DUMP_LIMIT
            )
            return json_response(200, state_summary(state, include_contacts=everything))

    def stats(self, request: Request) -> Response:
        raw = request.param("log")
        limit = int(raw) if raw and raw.isascii() and raw.isdigit() else None
        return json_response(200, self.app.stats.snapshot(limit))

    def reset_stats(self, request: Request) -> Response:
        self.app.stats.reset()
        return json_response(200, {"reset": True})

    def faults(self, request: Request) -> Response:
        return json_response(200, self.app.faults.describe())

    def set_faults(self, request: Request) -> Response:
        self.app.faults.update(_object(request))
        return json_response(200, self.app.faults.describe())

    def revoke(self, request: Request) -> Response:
        keep = bool(_object(request, allow_empty=True).get("keep_access_tokens", False))
        revoked = self.app.auth.revoke(keep_access_tokens=keep)
        return json_response(200, {"revoked_refresh_tokens": revoked})

    def expire(self, request: Request) -> Response:
        return json_response(200, {"expired_access_tokens": self.app.auth.expire_access_tokens()})

    def code(self, request: Request) -> Response:
        payload = _object(request)
        client_id = str(payload.get("client_id") or self.app.auth.client_id)
        try:
            code = self.app.auth.mint_code(client_id, str(payload.get("redirect_uri") or ""))
        except OAuthError as exc:
            raise ApiError(400, exc.description) from exc
        return json_response(200, {"code": code})

    def credentials(self, request: Request) -> Response:
        auth = self.app.auth
        return json_response(
            200,
            {
                "api_key": sorted(auth.api_keys)[0],
                "client_id": auth.client_id,
                "client_secret": auth.client_secret,
            },
        )

    def reset_throttle(self, request: Request) -> Response:
        self.app.throttle.reset()
        return json_response(200, {"reset": True})

    def set_email_status(self, request: Request) -> Response:
        payload = _object(request)
        address = self.app.state.set_status(
            str(payload.get("email") or ""),
            str(payload.get("status") or ""),
            touch_contacts=bool(payload.get("touch_contacts", False)),
        )
        return json_response(200, address_json(address))

    def add_contact(self, request: Request) -> Response:
        payload = _object(request)
        items = [
            EmailItem(str(i.get("field") or ""), str(i.get("email") or ""))
            for i in payload.get("email_addresses") or []
            if isinstance(i, dict)
        ]
        state = self.app.state
        contact = state.add_contact(
            str(payload.get("given_name") or ""), str(payload.get("family_name") or ""), items
        )
        with state.lock:
            return json_response(201, contact_json(state, contact, _ALL_FIELDS))


def state_summary(state: SandboxState, *, include_contacts: bool) -> dict[str, Any]:
    statuses = Counter(a.status for a in state.addresses.values())
    summary: dict[str, Any] = {
        "contact_count": len(state.contacts),
        "address_count": len(state.addresses),
        "statuses": dict(sorted(statuses.items())),
        "tags": [_tag_detail(t) for t in state.tags.values()],
        "tag_categories": [category_json(c) for c in state.categories.values()],
        "notes": [note_json(n, state.users.get(n.user_id)) for n in state.notes.values()],
        "tasks": [task_json(t) for t in state.tasks.values()],
        "users": [user_json(u) for u in state.users.values()],
    }
    if include_contacts:
        summary["contacts"] = [
            contact_json(state, state.contacts[cid], _ALL_FIELDS) for cid in state.contact_ids
        ]
        summary["addresses"] = [address_json(state.addresses[k]) for k in state.sorted_emails]
    return summary


def _tag_detail(tag: Tag) -> dict[str, Any]:
    detail = tag_json(tag)
    detail["contact_count"] = len(tag.contacts)
    if len(tag.contacts) <= _TAG_MEMBER_LIMIT:
        detail["contact_ids"] = [str(c) for c in sorted(tag.contacts)]
    return detail


def contact_detail(state: SandboxState, contact_id: str) -> dict[str, Any]:
    contact = state.contact(contact_id)
    return {
        "contact": contact_json(state, contact, _ALL_FIELDS),
        "tags": [state.tags[t].name for t in state.tag_ids_of(contact.id)],
        "notes": [note_json(n, state.users.get(n.user_id)) for n in state.notes_of(contact.id)],
        "tasks": [task_json(t) for t in state.tasks_of(contact.id)],
    }


def email_detail(state: SandboxState, email: str) -> dict[str, Any]:
    address = state.address(email)
    return {
        "address": None if address is None else address_json(address),
        "contact_ids": [str(c) for c in state.contacts_with(email)],
    }


def _object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    if allow_empty and not request.body.strip():
        return {}
    payload = request.json()
    if not isinstance(payload, dict):
        raise ApiError(400, "body must be a JSON object")
    return payload
