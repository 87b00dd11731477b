"""Credentials the way Keap issues and checks them.

Refresh tokens rotate: each refresh answers with a new one and kills the one presented, so a
client that refreshes twice with the same token (two threads, or a crash before saving the new
token) gets ``invalid_grant`` exactly as it would from Keap. Access tokens die after
``token_ttl`` seconds. Times come from ``time.monotonic`` so a test can shorten them safely.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from connector.sandbox.messages import ApiError

CODE_TTL_SECONDS = 600.0
SCOPE = "full|sandbox.infusionsoft.com"


@dataclass(frozen=True)
class Credential:
    """Who is calling: ``throttle_key`` is the bucket Keap would charge (client or key)."""

    kind: str
    throttle_key: str
    user_id: int


class OAuthError(Exception):
    """An RFC 6749 error answer from the token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    expires: float


class AuthServer:
    def __init__(
        self,
        client_id: str,
        client_secret: str,
        api_keys: frozenset[str],
        token_ttl: float,
        user_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_keys = api_keys
        self.token_ttl = token_ttl
        self.user_id = user_id
        self._clock = clock
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, float] = {}  # token -> expiry
        self._refresh: set[str] = set()

    # --- token endpoint ---------------------------------------------------------------------

    def mint_code(self, client_id: str, redirect_uri: str) -> str:
        if client_id != self.client_id:
            raise OAuthError(400, "invalid_client", "Unknown client_id")
        code = secrets.token_urlsafe(18)
        with self._lock:
            self._codes[code] = _Code(client_id, redirect_uri, self._clock() + CODE_TTL_SECONDS)
        return code

    def exchange_code(
        self, client: tuple[str, str], code: str, redirect_uri: str
    ) -> dict[str, object]:
        self._check_client(client)
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None or grant.expires < self._clock():
            raise OAuthError(400, "invalid_grant", "Invalid authorization code")
        if grant.redirect_uri != redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization")
        return self._issue()

    def refresh(self, client: tuple[str, str], refresh_token: str) -> dict[str, object]:
        self._check_client(client)
        with self._lock:
            if refresh_token not in self._refresh:
                raise OAuthError(400, "invalid_grant", "Invalid refresh token")
            self._refresh.discard(refresh_token)
        return self._issue()

    def _check_client(self, client: tuple[str, str]) -> None:
        if client != (self.client_id, self.client_secret):
            raise OAuthError(401, "invalid_client", "Invalid client credentials")

    def _issue(self) -> dict[str, object]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._access[access] = self._clock() + self.token_ttl
            self._refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(self.token_ttl),
            "token_type": "bearer",
            "scope": SCOPE,
        }

    # --- API calls ----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, api_key: str | None) -> Credential:
        if api_key is not None:
            if api_key not in self.api_keys:
                raise ApiError(401, "Invalid API key")
            return Credential("api_key", f"key:{api_key}", self.user_id)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401, "Missing access token (use Authorization: Bearer or X-Keap-API-Key)"
            )
        with self._lock:
            expiry = self._access.get(token.strip())
        if expiry is None:
            raise ApiError(401, "Invalid access token")
        if expiry <= self._clock():
            raise ApiError(401, "Access token expired")
        return Credential("oauth", f"oauth:{self.client_id}", self.user_id)

    # --- test controls ------------------------------------------------------------------------

    def revoke(self, *, keep_access_tokens: bool = False) -> int:
        """A user disconnecting the app: refresh tokens (and by default access tokens) die."""
        with self._lock:
            count = len(self._refresh)
            self._refresh.clear()
            if not keep_access_tokens:
                self._access.clear()
            return count

    def expire_access_tokens(self) -> int:
        with self._lock:
            now = self._clock()
            for token in self._access:
                self._access[token] = now
            return len(self._access)

    def refresh_tokens_outstanding(self) -> int:
        with self._lock:
            return len(self._refresh)
