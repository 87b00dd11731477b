"""Test doubles for the Keap client: a token store, a fake clock and a fake token endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import requests
from pydantic import SecretStr
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter

from connector.keap.tokens import OAuthToken

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "client-secret-s3cr3t-value"
API_KEY = "KeapAK-test-api-key-0123456789"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_token(
    n: int, expires_at: datetime, scope: str = "full|xy123.infusionsoft.com"
) -> OAuthToken:
    return OAuthToken(
        access_token=SecretStr(f"access-token-{n:04d}-abcdef"),
        refresh_token=SecretStr(f"refresh-token-{n:04d}-uvwxyz"),
        expires_at=expires_at,
        scope=scope,
    )


class InMemoryTokenStore:
    """A ``TokenStore`` in memory. Several managers sharing one instance act as processes
    sharing one store: ``refresh_lock`` excludes all of them, like the real cross-process lock.
    """

    def __init__(self, token: OAuthToken | None = None) -> None:
        self.token = token
        self.state: str | None = None
        self.events: list[str] = []
        self._lock = asyncio.Lock()

    async def load_token(self) -> OAuthToken | None:
        return self.token

    async def save_token(self, token: OAuthToken) -> None:
        self.events.append(f"save {token.access_token.get_secret_value()}")
        self.token = token

    async def clear_token(self) -> None:
        self.token = None

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        return self._locked()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def save_login_state(self, state: str) -> None:
        self.state = state

    async def take_login_state(self) -> str | None:
        state, self.state = self.state, None
        return state


class FakeClock:
    """Monotonic time that only moves when someone sleeps; sleeps are recorded, never waited."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class WallClock:
    """A ``datetime`` clock for token expiry that tests move by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class TokenRequest:
    url: str
    form: dict[str, str]
    authorization: str | None
    content_type: str | None


@dataclass
class FakeTokenServer(BaseAdapter):
    """Keap's ``/token``: rotates the refresh token on every refresh, like Keap does.

    Mounted into requests-oauthlib's session through ``TokenEndpoint(adapter=...)``.
    """

    valid_refresh: str = "refresh-token-0001-uvwxyz"
    valid_code: str = "auth-code-123456"
    expires_in: int = 3600
    issued: int = 1
    requests: list[TokenRequest] = field(default_factory=list)
    override: Callable[[TokenRequest], tuple[int, dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    # BaseAdapter.send's own signature; the annotations name PreparedRequest and Response directly
    # because the ``requests`` field above hides the module inside the class body.
    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        seen = TokenRequest(
            url=str(request.url),
            form=dict(parse_qsl(body)),
            authorization=request.headers.get("Authorization"),
            content_type=request.headers.get("Content-Type"),
        )
        with self._lock:
            self.requests.append(seen)
            status, payload = self.override(seen) if self.override else self._answer(seen)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None

    @property
    def refreshes(self) -> int:
        return sum(1 for r in self.requests if r.form.get("grant_type") == "refresh_token")

    def _answer(self, seen: TokenRequest) -> tuple[int, dict[str, Any]]:
        grant = seen.form.get("grant_type")
        if grant == "refresh_token" and seen.form.get("refresh_token") == self.valid_refresh:
            return 200, self._issue()
        if grant == "authorization_code" and seen.form.get("code") == self.valid_code:
            return 200, self._issue()
        return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}

    def _issue(self) -> dict[str, Any]:
        self.issued += 1
        self.valid_refresh = f"refresh-token-{self.issued:04d}-uvwxyz"
        return {
            "access_token": f"access-token-{self.issued:04d}-abcdef",
            "refresh_token": self.valid_refresh,
            "expires_in": self.expires_in,
            "token_type": "bearer",
            "scope": "full|xy123.infusionsoft.com",
        }
