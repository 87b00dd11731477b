"""Contacts: get (with ``fields``), list (filter, order, keyset pages) and PATCH.

The default field set of a contact read is deliberately small (id and names): Keap does not
document its default, so a client that forgets ``fields=email_addresses`` must notice here
rather than in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.sandbox.messages import ApiError, Request, Response, iso_ms, json_response
from connector.sandbox.paging import (
    Clause,
    ListQuery,
    compare,
    id_set,
    keap_time_ms,
    page_of,
    parse_list_query,
    require_equality,
    text_matches,
)
from connector.sandbox.state import Contact, EmailItem, SandboxState

CONTACT_FIELDS = frozenset(
    [
        "addresses",
        "anniversary_date",
        "birth_date",
        "company",
        "contact_type",
        "create_time",
        "custom_fields",
        "email_addresses",
        "family_name",
        "fax_numbers",
        "given_name",
        "id",
        "job_title",
        "leadsource_id",
        "links",
        "middle_name",
        "notes",
        "origin",
        "owner_id",
        "phone_numbers",
        "preferred_locale",
        "preferred_name",
        "prefix",
        "referral_code",
        "score_value",
        "social_accounts",
        "source_type",
        "spouse_name",
        "suffix",
        "tag_ids",
        "time_zone",
        "update_time",
        "utm_parameters",
        "website",
        "account_id",
        "assistant_name",
        "assistant_phone",
        "billing_information",
        "created_by",
        "groups",
        "last_updated_by",
    ]
)
DEFAULT_FIELDS = frozenset({"id", "given_name", "family_name"})
_WRITABLE = ("email_addresses", "given_name", "family_name")
_ORDERS = ("id", "create_time", "update_time", "email")
_UNSUPPORTED_FILTERS = frozenset(
    ["company_id", "phone_number", "phone_fields", "city", "state", "website", "lead_source_name"]
)

Predicate = Callable[[Contact], bool]


def requested_fields(request: Request) -> frozenset[str]:
    values = request.params.get("fields")
    if not values:
        return DEFAULT_FIELDS
    names = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = names - CONTACT_FIELDS
    if unknown:
        raise ApiError(400, f"Invalid fields: {', '.join(sorted(unknown))}")
    return frozenset(names | {"id"})


def contact_json(state: SandboxState, contact: Contact, fields: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(contact.id)}
    if "given_name" in fields:
        out["given_name"] = contact.given_name
    if "family_name" in fields:
        out["family_name"] = contact.family_name
    if "email_addresses" in fields:
        out["email_addresses"] = [_email_json(state, f, e) for f, e in contact.emails]
    if "create_time" in fields:
        out["create_time"] = iso_ms(contact.create_ms)
    if "update_time" in fields:
        out["update_time"] = iso_ms(contact.update_ms)
    if "tag_ids" in fields:
        out["tag_ids"] = [str(t) for t in state.tag_ids_of(contact.id)]
    return out


def _email_json(state: SandboxState, field: str, email: str) -> dict[str, Any]:
    address = state.address(email)
    status = address.status if address is not None else "NON_MARKETABLE"
    item: dict[str, Any] = {
        "email": email,
        "field": field,
        "email_opt_status": status,
        "is_opt_in": address is not None and address.opted_in,
    }
    if address is not None and address.opt_in_reason:
        item["opt_in_reason"] = address.opt_in_reason
    return item


class ContactsApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._orders: dict[str, tuple[int, list[Any]]] = {}

    def get(self, request: Request, args: dict[str, str]) -> Response:
        fields = requested_fields(request)
        with self.state.lock:
            body = contact_json(self.state, self.state.contact(args["contact_id"]), fields)
        return json_response(200, body)

    def patch(self, request: Request, args: dict[str, str]) -> Response:
        fields = requested_fields(request)
        payload = request.json()
        if not isinstance(payload, dict):
            raise ApiError(400, "request body must be a JSON object")
        updates = _updates(request, payload)
        with self.state.lock:
            contact = self.state.contact(args["contact_id"])
            if "email_addresses" in updates:
                self.state.set_emails(contact.id, _email_items(payload.get("email_addresses")))
            for name in ("given_name", "family_name"):
                if name in updates:
                    setattr(contact, name, str(payload.get(name) or ""))
            body = contact_json(self.state, contact, fields)
        return json_response(200, body)

    def list_contacts(self, request: Request, args: dict[str, str]) -> Response:
        fields = requested_fields(request)
        query = parse_list_query(request, _ORDERS)
        with self.state.lock:
            accept = self._acceptor(query)
            keys = self._keys(query)
            served, token = page_of(keys, query, accept)
            contacts = [self.state.contacts[_cid(k)] for k in served]
            body = [contact_json(self.state, c, fields) for c in contacts]
        return json_response(200, {"contacts": body, "next_page_token": token})

    def _keys(self, query: ListQuery) -> list[Any]:
        candidates = _candidates(self.state, query.clauses)
        if candidates is None:
            return self._ordered(query.order)
        key = _key_function(query.order)
        known = [self.state.contacts[c] for c in candidates if c in self.state.contacts]
        return sorted(key(c) for c in known)

    def _ordered(self, order: str) -> list[Any]:
        if order == "id":
            return self.state.contact_ids
        cached = self._orders.get(order)
        if cached is None or cached[0] != self.state.version:
            key = _key_function(order)
            cached = (self.state.version, sorted(key(c) for c in self.state.contacts.values()))
            self._orders[order] = cached
        return cached[1]

    def _acceptor(self, query: ListQuery) -> Callable[[Any], bool]:
        tests = [_predicate(c) for c in query.clauses]
        contacts = self.state.contacts

        def accept(key: Any) -> bool:
            contact = contacts[_cid(key)]
            return all(test(contact) for test in tests)

        return accept


def _cid(key: Any) -> int:
    return key if isinstance(key, int) else int(key[-1])


def _key_function(order: str) -> Callable[[Contact], Any]:
    if order == "id":
        return lambda c: c.id
    if order == "create_time":
        return lambda c: (c.create_ms, c.id)
    if order == "update_time":
        return lambda c: (c.update_ms, c.id)
    return lambda c: (c.emails[0][1].lower() if c.emails else "", c.id)


def _candidates(state: SandboxState, clauses: tuple[Clause, ...]) -> set[int] | None:
    """Ids that can match at all, when a clause pins them down; ``None`` means scan all."""
    found: set[int] | None = None
    for clause in clauses:
        narrowed: set[int] | None = None
        if clause.name in ("ids", "contact_ids"):
            narrowed = id_set(clause)
        elif clause.name == "email" and clause.op == "==" and not clause.value.endswith("*"):
            narrowed = set(state.contacts_with(clause.value))
        if narrowed is not None:
            found = narrowed if found is None else found & narrowed
    return found


def _predicate(clause: Clause) -> Predicate:
    name = clause.name
    if name == "contact_id":
        bound = int(clause.value) if clause.value.isascii() and clause.value.isdigit() else -1
        return lambda c: compare(c.id, clause.op, bound)
    require_equality(clause)
    if name == "email":
        return lambda c: any(text_matches(e, clause.value) for _, e in c.emails)
    if name in ("given_name", "family_name", "middle_name"):
        return lambda c: text_matches(str(getattr(c, name, "")), clause.value)
    if name in ("ids", "contact_ids"):
        wanted = id_set(clause)
        return lambda c: c.id in wanted
    if name == "start_update_time":
        start = keap_time_ms(clause)
        return lambda c: c.update_ms >= start
    if name == "end_update_time":
        end = keap_time_ms(clause)
        return lambda c: c.update_ms <= end
    if name in _UNSUPPORTED_FILTERS:
        raise ApiError(501, f"The sandbox does not implement the contact filter {name!r}")
    raise ApiError(400, f"Invalid filter field {name!r}")


def _updates(request: Request, payload: dict[str, Any]) -> set[str]:
    masks = request.params.get("update_mask")
    names = {p.strip() for m in masks for p in m.split(",") if p.strip()} if masks else set(payload)
    unsupported = names - set(_WRITABLE)
    if unsupported:
        raise ApiError(
            501, f"The sandbox does not implement updating {', '.join(sorted(unsupported))}"
        )
    return names


def _email_items(raw: Any) -> list[EmailItem]:
    """Masked but absent means an empty list, as in Keap: every address is removed."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
        raise ApiError(400, "email_addresses must be a list of objects")
    return [
        EmailItem(
            str(i.get("field") or ""), str(i.get("email") or ""), str(i.get("opt_in_reason") or "")
        )
        for i in raw
    ]
