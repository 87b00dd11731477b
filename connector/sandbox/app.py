"""The request pipeline: faults, then credentials, throttle, spec check, then the operation.

The order mirrors Keap's gateway: a connection can fail before anything is checked (or, with
``drop_after_handling``, after the request was carried out and only its answer is lost); a bad
or expired token is refused before it is charged; an authenticated call is charged to its bucket
even when the backend then fails (an outage or a random 503), so retry storms cost quota as
they do against Keap. Refused credentials get no throttle headers: there is no bucket to
report on.
"""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import unquote

from connector.sandbox import spec
from connector.sandbox.auth import AuthServer, Credential
from connector.sandbox.faults import Fault, FaultInjector
from connector.sandbox.inspection import Inspection
from connector.sandbox.messages import (
    THROTTLED_BODY,
    ApiError,
    Request,
    Response,
    error_response,
    json_response,
)
from connector.sandbox.oauth import (
    ALLOW_PATH,
    AUTHORIZE_PATH,
    CALLBACK_PATH,
    TOKEN_PATH,
    OAuthPages,
)
from connector.sandbox.options import SandboxOptions
from connector.sandbox.routes import Route, build_routes, match
from connector.sandbox.seed import SeedPlan, default_anchor_ms, seed_state
from connector.sandbox.state import SandboxState
from connector.sandbox.stats import Stats
from connector.sandbox.throttle import Throttle

log = logging.getLogger(__name__)

_UNAVAILABLE = "The service is temporarily unavailable"


class SandboxApp:
    """Everything but the socket: ``handle`` answers a request, or ``None`` to drop it."""

    def __init__(self, options: SandboxOptions, api_key: str, client_secret: str) -> None:
        self.options = options
        self.state = SandboxState()
        anchor = options.data_anchor_ms or default_anchor_ms()
        plan = SeedPlan(options.contacts, options.bounced_fraction, options.seed, anchor)
        seed_state(self.state, plan)
        self.auth = AuthServer(
            options.effective_client_id(), client_secret, frozenset({api_key}), options.token_ttl
        )
        self.throttle = Throttle(options.requests_per_second, options.effective_burst())
        self.faults = FaultInjector(options.faults, seed=options.seed)
        self.stats = Stats()
        self.oauth = OAuthPages(self.auth)
        self.inspection = Inspection(self)
        self.routes = build_routes(self.state)

    def handle(self, request: Request) -> Response | None:
        operation, response = self._route(request)
        status = 0 if response is None else response.status
        if not request.path.startswith("/_sandbox"):
            self.stats.record(request.method, request.path, request.query, operation, status)
        if response is not None:
            response.headers.setdefault("x-request-id", uuid.uuid4().hex)
        return response

    def _route(self, request: Request) -> tuple[str, Response | None]:
        path = request.path
        if path.startswith("/_sandbox/") or path == "/_sandbox":
            return "inspection", self.inspection.handle(request)
        if path.startswith("/crm/"):
            route, args = match(self.routes, request.method, path)
            return (route.operation if route else "unknown"), self._api(request, route, args)
        if path == TOKEN_PATH:
            return "token", self._token(request)
        pages = {AUTHORIZE_PATH: self.oauth.authorize, ALLOW_PATH: self.oauth.allow}
        pages[CALLBACK_PATH] = self.oauth.callback
        if path in pages and request.method == "GET":
            return "authorize", pages[path](request)
        return "unknown", error_response(404, f"No such page: {path}")

    def _token(self, request: Request) -> Response | None:
        fault = self.faults.decide(request.method, request.path)
        if fault.drop:
            self.stats.count("dropped")
            return None
        self._delay(fault.delay)
        if fault.error_status is not None:
            self.stats.count(fault.reason)
            return error_response(fault.error_status, _UNAVAILABLE)
        response = self.oauth.token(request)
        grant = "refresh" if b"grant_type=refresh_token" in request.body else "code"
        if response.status == 200:
            self.stats.count("refreshes" if grant == "refresh" else "code_exchanges")
        elif grant == "refresh":
            self.stats.count("refresh_failures")
        return self._answer_or_drop(fault, response)

    def _api(self, request: Request, route: Route | None, args: dict[str, str]) -> Response | None:
        fault = self.faults.decide(request.method, request.path)
        if fault.drop:
            self.stats.count("dropped")
            return None
        self._delay(fault.delay)
        try:
            credential = self.auth.authenticate(
                request.header("authorization"), request.header("x-keap-api-key")
            )
        except ApiError as exc:
            self.stats.count("unauthorized")
            return exc.response()
        decision = self.throttle.take(credential.throttle_key)
        if not decision.allowed:
            self.stats.count("throttled")
            response = json_response(429, THROTTLED_BODY)
        elif fault.error_status is not None:
            self.stats.count(fault.reason)
            response = error_response(fault.error_status, _UNAVAILABLE)
        else:
            response = self._call(request, route, args, credential)
        response.headers.update(decision.headers)
        return self._answer_or_drop(fault, response)

    def _answer_or_drop(self, fault: Fault, response: Response) -> Response | None:
        """The request was carried out; with ``drop_after_handling`` its answer is lost."""
        if not fault.drop_after:
            return response
        self.stats.count("dropped")
        return None

    def _delay(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.count("delayed")
            time.sleep(seconds)

    def _call(
        self, request: Request, route: Route | None, args: dict[str, str], credential: Credential
    ) -> Response:
        rejected = self._check_spec(request)
        if rejected is not None:
            return rejected
        if route is None:
            return error_response(
                501, f"The sandbox does not implement {request.method} {unquote(request.path)}"
            )
        try:
            return route.handler(request, args, credential)
        except ApiError as exc:
            return exc.response()
        except Exception as exc:  # a sandbox bug must answer, not kill the connection thread
            log.exception("sandbox handler failed")
            return error_response(500, f"Sandbox internal error: {type(exc).__name__}: {exc}")

    def _check_spec(self, request: Request) -> Response | None:
        if not self.options.validate:
            return None
        problems = spec.violations(
            request.method,
            request.path,
            request.query,
            request.body,
            request.header("content-type") or "",
            request.headers,
        )
        if not problems:
            return None
        self.stats.violation(request.method, request.path, problems)
        status = 400
        if problems[0].startswith("PathNotFound"):
            status = 404
        elif problems[0].startswith("OperationNotFound"):
            status = 405
        return error_response(status, f"Request does not match Keap's API: {problems[0]}")
