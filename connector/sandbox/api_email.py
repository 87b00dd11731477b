"""Email address status: per address, shared by every contact that has the address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.sandbox.messages import ApiError, Request, Response, iso_ms, json_response
from connector.sandbox.paging import Clause, page_of, parse_list_query, require_equality
from connector.sandbox.state import STATUSES, Address, SandboxState

_ORDERS = ("email", "status", "create_time", "last_click_time", "last_open_time", "last_sent_time")


def address_json(address: Address) -> dict[str, Any]:
    return {
        "email": address.email,
        "opted_in": address.opted_in,
        "status": address.status,
        "create_time": iso_ms(address.create_ms),
    }


class EmailApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def get_status(self, request: Request, args: dict[str, str]) -> Response:
        with self.state.lock:
            address = self._address(args["email"])
            return json_response(200, address_json(address))

    def patch_status(self, request: Request, args: dict[str, str]) -> Response:
        payload = request.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("opted_in"), bool):
            raise ApiError(400, "opted_in (boolean) is required")
        reason = payload.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "reason is required")
        with self.state.lock:
            address = self._address(args["email"])
            self.state.set_opt_in(address.email, payload["opted_in"], reason)
            return json_response(200, address_json(address))

    def list_addresses(self, request: Request, args: dict[str, str]) -> Response:
        query = parse_list_query(request, _ORDERS)
        tests = [_predicate(c) for c in query.clauses]
        with self.state.lock:
            addresses = self.state.addresses
            keys = self._keys(query.order)

            def accept(key: Any) -> bool:
                address = addresses[key if isinstance(key, str) else key[-1]]
                return all(test(address) for test in tests)

            served, token = page_of(keys, query, accept)
            items = [address_json(addresses[k if isinstance(k, str) else k[-1]]) for k in served]
        return json_response(200, {"email_addresses": items, "next_page_token": token})

    def _keys(self, order: str) -> list[Any]:
        """Engagement times are not simulated, so ordering by them falls back to the address."""
        addresses = self.state.addresses
        if order == "status":
            return sorted((a.status, k) for k, a in addresses.items())
        if order == "create_time":
            return sorted((a.create_ms, k) for k, a in addresses.items())
        return self.state.sorted_emails

    def _address(self, email: str) -> Address:
        address = self.state.address(email)
        if address is None:
            raise ApiError(404, f"Email address {email} not found")
        return address


def _predicate(clause: Clause) -> Callable[[Address], bool]:
    require_equality(clause)
    values = {v.strip() for v in clause.value.split(",") if v.strip()}
    if clause.name == "emails":
        wanted = {v.lower() for v in values}
        return lambda a: a.email.lower() in wanted
    if clause.name == "statuses":
        unknown = values - set(STATUSES)
        if unknown:
            raise ApiError(400, f"Invalid statuses: {', '.join(sorted(unknown))}")
        return lambda a: a.status in values
    if clause.name == "opted_in":
        if clause.value not in ("true", "false"):
            raise ApiError(400, "opted_in must be true or false")
        wanted_flag = clause.value == "true"
        return lambda a: a.opted_in == wanted_flag
    raise ApiError(400, f"Invalid filter field {clause.name!r}")
