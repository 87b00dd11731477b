"""Notes, tasks and users: what the connector writes to record what it did, and as whom.

``userinfo`` answers with the global user id in ``id`` (as Keap's spec describes it) and the
app's own user id in ``sub``; only the app's own id (``/users`` ``id``) is accepted as a note's
``user_id``, so a client that takes the wrong one fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.sandbox.messages import ApiError, Request, Response, iso_ms, json_response
from connector.sandbox.paging import Clause, id_set, page_of, parse_list_query, require_equality
from connector.sandbox.state import Note, SandboxState, Task, User

TENANT_ID = "sandbox"
_GLOBAL_ID_OFFSET = 900_000


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "global_user_id": str(_GLOBAL_ID_OFFSET + user.id),
        "keap_id": user.email,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "admin": user.admin,
        "partner": False,
        "status": "ACTIVE",
        "email_addresses": [{"email": user.email, "field": "EMAIL1"}],
    }


def userinfo_json(user: User) -> dict[str, Any]:
    return {
        "sub": str(user.id),
        "id": str(_GLOBAL_ID_OFFSET + user.id),
        "keap_id": user.email,
        "email": user.email,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "is_admin": user.admin,
        "tenant_id": TENANT_ID,
    }


def note_json(note: Note, user: User | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(note.id),
        "contact_id": str(note.contact_id),
        "title": note.title,
        "type": note.type,
        "text": note.text,
        "created_by_user_id": str(note.user_id),
        "last_updated_by_user_id": str(note.user_id),
        "create_time": iso_ms(note.create_ms),
        "update_time": iso_ms(note.create_ms),
    }
    if user is not None:
        out["assigned_to_user"] = {
            "id": str(user.id),
            "given_name": user.given_name,
            "family_name": user.family_name,
            "email_address": user.email,
        }
    if note.pinned:
        out["pinned_at"] = iso_ms(note.create_ms)
    return out


def task_json(task: Task) -> dict[str, Any]:
    out = {k: v for k, v in task.fields.items() if k not in ("contact_id", "assigned_to_user_id")}
    out.update(
        id=str(task.id),
        assigned_to_user_id=str(task.assigned_to_user_id),
        created_by_user_id=str(task.created_by_user_id),
        create_time=iso_ms(task.create_ms),
        modification_time=iso_ms(task.create_ms),
    )
    out.setdefault("completed", False)
    if task.contact_id is not None:
        out["contact_id"] = str(task.contact_id)
    return out


class ActivityApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def create_note(self, request: Request, args: dict[str, str]) -> Response:
        payload = request.json()
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object")
        note = self.state.create_note(args["contact_id"], payload)
        return json_response(201, note_json(note, self.state.users.get(note.user_id)))

    def list_notes(self, request: Request, args: dict[str, str]) -> Response:
        query = parse_list_query(request, ("id", "create_time", "update_time"))
        if query.clauses:
            raise ApiError(501, "The sandbox does not implement note filters")
        with self.state.lock:
            contact = self.state.contact(args["contact_id"])
            notes = {n.id: n for n in self.state.notes_of(contact.id)}
            served, token = page_of(sorted(notes), query, lambda _key: True)
            users = self.state.users
            items = [note_json(notes[i], users.get(notes[i].user_id)) for i in served]
        return json_response(200, {"notes": items, "next_page_token": token})

    def create_task(self, request: Request, args: dict[str, str], user_id: int) -> Response:
        payload = request.json()
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object")
        task = self.state.create_task(payload, creator=user_id)
        return json_response(201, task_json(task))

    def list_tasks(self, request: Request, args: dict[str, str]) -> Response:
        query = parse_list_query(request, ("id", "create_time", "due_time", "update_time"))
        tests = [_task_predicate(c) for c in query.clauses]
        with self.state.lock:
            tasks = self.state.tasks
            served, token = page_of(
                sorted(tasks), query, lambda key: all(test(tasks[key]) for test in tests)
            )
            items = [task_json(tasks[i]) for i in served]
        return json_response(200, {"tasks": items, "next_page_token": token})

    def list_users(self, request: Request, args: dict[str, str]) -> Response:
        query = parse_list_query(request, ("create_time", "email", "name"), max_page=100)
        if query.clauses:
            raise ApiError(501, "The sandbox does not implement user filters")
        with self.state.lock:
            users = self.state.users
            served, token = page_of(sorted(users), query, lambda _key: True)
            items = [user_json(users[i]) for i in served]
        return json_response(200, {"users": items, "next_page_token": token})

    def userinfo(self, request: Request, args: dict[str, str], user_id: int) -> Response:
        user = self.state.users.get(user_id)
        if user is None:
            raise ApiError(404, "User not found")
        return json_response(200, userinfo_json(user))


def _task_predicate(clause: Clause) -> Callable[[Task], bool]:
    require_equality(clause)
    value = clause.value
    if clause.name == "contact_id":
        return lambda t: str(t.contact_id) == value
    if clause.name == "user_id":
        return lambda t: str(t.assigned_to_user_id) == value
    if clause.name == "task_ids":
        wanted = id_set(clause)
        return lambda t: t.id in wanted
    if clause.name == "is_completed":
        return lambda t: str(bool(t.fields.get("completed"))).lower() == value.lower()
    if clause.name == "priority":
        return lambda t: t.fields.get("priority") == value
    raise ApiError(501, f"The sandbox does not implement the task filter {clause.name!r}")
