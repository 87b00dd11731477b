"""The OAuth2 token record and the interface of wherever it is kept.

Keap rotates the refresh token on every refresh and kills the old one, so whoever refreshes must
hold ``refresh_lock`` (which serialises refreshes across processes, not only tasks), re-read the
token inside it, and save the new token before using the new access token.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import SecretStr


@dataclass(frozen=True)
class OAuthToken:
    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: datetime
    scope: str = ""
    token_type: str = "bearer"

    def expires_within(self, margin: timedelta, now: datetime) -> bool:
        return self.expires_at - margin <= now


class TokenStore(Protocol):
    """Durable home of the one OAuth token record of this installation."""

    async def load_token(self) -> OAuthToken | None: ...

    async def save_token(self, token: OAuthToken) -> None: ...

    async def clear_token(self) -> None: ...

    def refresh_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while refreshing; excludes other processes sharing this store, not only tasks."""
        ...

    async def save_login_state(self, state: str) -> None:
        """Remember the OAuth ``state`` of ``auth login`` so a later ``--code`` can check it."""
        ...

    async def take_login_state(self) -> str | None:
        """Return and forget the remembered ``state``."""
        ...
