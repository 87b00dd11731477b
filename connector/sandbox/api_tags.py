"""Tags and tag categories: exact-name lookup, create, and one-tag-to-many-contacts batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.sandbox.messages import ApiError, Request, Response, iso_ms, json_response
from connector.sandbox.paging import Clause, id_set, page_of, parse_list_query, require_equality
from connector.sandbox.state import SandboxState, Tag, TagCategory

_ORDERS = ("id", "name", "create_time", "update_time")


def tag_json(tag: Tag) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(tag.id),
        "name": tag.name,
        "description": tag.description,
        "create_time": iso_ms(tag.create_ms),
        "update_time": iso_ms(tag.create_ms),
    }
    if tag.category_id is not None:
        out["category"] = {"id": str(tag.category_id)}
    return out


def category_json(category: TagCategory) -> dict[str, Any]:
    return {
        "id": str(category.id),
        "name": category.name,
        "description": category.description,
        "create_time": iso_ms(category.create_ms),
        "update_time": iso_ms(category.create_ms),
    }


class TagsApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def list_tags(self, request: Request, args: dict[str, str]) -> Response:
        query = parse_list_query(request, _ORDERS)
        tests = [_tag_predicate(c) for c in query.clauses]
        with self.state.lock:
            tags = self.state.tags
            keys = sorted(_sort_key(t.id, t.name, t.create_ms, query.order) for t in tags.values())
            served, token = page_of(keys, query, lambda k: all(t(tags[k[-1]]) for t in tests))
            items = [tag_json(tags[k[-1]]) for k in served]
        return json_response(200, {"tags": items, "next_page_token": token})

    def create_tag(self, request: Request, args: dict[str, str]) -> Response:
        payload = _object(request)
        category = payload.get("category")
        category_id = str(category["id"]) if isinstance(category, dict) else None
        tag = self.state.create_tag(
            str(payload.get("name") or ""), str(payload.get("description") or ""), category_id
        )
        return json_response(201, tag_json(tag))

    def list_categories(self, request: Request, args: dict[str, str]) -> Response:
        query = parse_list_query(request, _ORDERS)
        tests = [_category_predicate(c) for c in query.clauses]
        with self.state.lock:
            found = self.state.categories
            keys = sorted(_sort_key(c.id, c.name, c.create_ms, query.order) for c in found.values())
            served, token = page_of(keys, query, lambda k: all(t(found[k[-1]]) for t in tests))
            items = [category_json(found[k[-1]]) for k in served]
        return json_response(200, {"tag_categories": items, "next_page_token": token})

    def create_category(self, request: Request, args: dict[str, str]) -> Response:
        payload = _object(request)
        category = self.state.create_category(
            str(payload.get("name") or ""), str(payload.get("description") or "")
        )
        return json_response(201, category_json(category))

    def apply(self, request: Request, args: dict[str, str]) -> Response:
        results = self.state.apply_tag(args["tag_id"], _contact_ids(request))
        return json_response(200, {"results": results})

    def remove(self, request: Request, args: dict[str, str]) -> Response:
        self.state.remove_tag(args["tag_id"], _contact_ids(request))
        return Response(204)


def _sort_key(item_id: int, name: str, create_ms: int, order: str) -> tuple[Any, ...]:
    if order == "name":
        return (name, item_id)
    if order in ("create_time", "update_time"):
        return (create_ms, item_id)
    return (item_id,)


def _object(request: Request) -> dict[str, Any]:
    payload = request.json()
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    return payload


def _contact_ids(request: Request) -> list[str]:
    ids = _object(request).get("contact_ids")
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "contact_ids must be a non-empty list")
    return [str(i) for i in ids]


def _tag_predicate(clause: Clause) -> Callable[[Tag], bool]:
    require_equality(clause)
    value = clause.value
    if clause.name == "name":
        return lambda t: t.name == value  # Keap's tag search is exact match only
    if clause.name == "description":
        return lambda t: (t.description or "NONE") == value
    if clause.name == "category_id":
        return lambda t: str(t.category_id or "NONE") == value
    if clause.name == "tag_ids":
        wanted = id_set(clause)
        return lambda t: t.id in wanted
    raise _unsupported(clause)


def _category_predicate(clause: Clause) -> Callable[[TagCategory], bool]:
    require_equality(clause)
    value = clause.value
    if clause.name == "name":
        return lambda c: (c.name or "NONE") == value
    if clause.name == "description":
        return lambda c: (c.description or "NONE") == value
    raise _unsupported(clause)


def _unsupported(clause: Clause) -> ApiError:
    if clause.name.startswith(("since_", "until_")):
        return ApiError(501, f"The sandbox does not implement the filter {clause.name!r}")
    return ApiError(400, f"Invalid filter field {clause.name!r}")
