"""The Keap REST v2 operations the sandbox serves, matched by method and path template."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from connector.sandbox.api_activity import ActivityApi
from connector.sandbox.api_contacts import ContactsApi
from connector.sandbox.api_email import EmailApi
from connector.sandbox.api_tags import TagsApi
from connector.sandbox.auth import Credential
from connector.sandbox.messages import Request, Response, decoded_path
from connector.sandbox.state import SandboxState

Handler = Callable[[Request, dict[str, str], Credential], Response]
PlainHandler = Callable[[Request, dict[str, str]], Response]
UserHandler = Callable[[Request, dict[str, str], int], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str  # Keap's operationId, used as the stats key
    handler: Handler


def _template(path: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)  # templates hold no regex syntax
    return re.compile(f"^/crm{regex}$")


def _plain(handler: PlainHandler) -> Handler:
    return lambda request, args, _credential: handler(request, args)


def _as_user(handler: UserHandler) -> Handler:
    return lambda request, args, credential: handler(request, args, credential.user_id)


def build_routes(state: SandboxState) -> list[Route]:
    contacts, email = ContactsApi(state), EmailApi(state)
    tags, activity = TagsApi(state), ActivityApi(state)
    table: list[tuple[str, str, str, Handler]] = [
        ("GET", "/rest/v2/contacts", "listContacts", _plain(contacts.list_contacts)),
        ("GET", "/rest/v2/contacts/{contact_id}", "getContact", _plain(contacts.get)),
        ("PATCH", "/rest/v2/contacts/{contact_id}", "updateContact", _plain(contacts.patch)),
        ("GET", "/rest/v2/contacts/{contact_id}/notes", "listNotes", _plain(activity.list_notes)),
        (
            "POST",
            "/rest/v2/contacts/{contact_id}/notes",
            "createNote",
            _plain(activity.create_note),
        ),
        (
            "GET",
            "/rest/v2/emailAddresses",
            "listEmailAddressStatuses",
            _plain(email.list_addresses),
        ),
        (
            "GET",
            "/rest/v2/emailAddresses/{email}/status",
            "getEmailAddressStatus",
            _plain(email.get_status),
        ),
        (
            "PATCH",
            "/rest/v2/emailAddresses/{email}/status",
            "updateEmailAddressOptStatus",
            _plain(email.patch_status),
        ),
        ("GET", "/rest/v2/tags", "listTags", _plain(tags.list_tags)),
        ("POST", "/rest/v2/tags", "createTag", _plain(tags.create_tag)),
        ("GET", "/rest/v2/tags/categories", "listTagCategories", _plain(tags.list_categories)),
        ("POST", "/rest/v2/tags/categories", "createTagCategory", _plain(tags.create_category)),
        ("POST", "/rest/v2/tags/{tag_id}/contacts:applyTags", "applyTags", _plain(tags.apply)),
        ("POST", "/rest/v2/tags/{tag_id}/contacts:removeTags", "removeTags", _plain(tags.remove)),
        ("POST", "/rest/v2/tasks", "createTask", _as_user(activity.create_task)),
        ("GET", "/rest/v2/tasks", "listTasks", _plain(activity.list_tasks)),
        ("GET", "/rest/v2/users", "listPaginatedUsers", _plain(activity.list_users)),
        ("GET", "/rest/v2/oauth/connect/userinfo", "getUserInfo", _as_user(activity.userinfo)),
    ]
    return [Route(m, _template(p), op, h) for m, p, op, h in table]


def match(routes: list[Route], method: str, raw_path: str) -> tuple[Route | None, dict[str, str]]:
    """The route for a request and its decoded path arguments; ``None`` when none serves it.

    Templates are matched segment by segment on the path as sent, and each argument is decoded
    afterwards, so an encoded ``/`` (``%2F``), ``?``, ``#`` or ``%`` in an email's local part
    stays inside its one segment, as in Keap (RFC 6570 simple expansion of a path parameter).
    """
    path = decoded_path(raw_path)
    for route in routes:
        found = route.pattern.match(path)
        if found and route.method == method:
            return route, {name: unquote(value) for name, value in found.groupdict().items()}
    return None, {}
