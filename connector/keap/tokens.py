"""The interface of wherever the OAuth2 token is kept (the record is ``connector.oauth_token``).

Keap rotates the refresh token on every refresh and kills the old one, so whoever refreshes must
hold ``refresh_lock`` (which serialises refreshes across processes, not only tasks), re-read the
token inside it, and save the new token before using the new access token.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from connector.oauth_token import OAuthToken

__all__ = ["OAuthToken", "TokenStore"]


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
