"""The OAuth2 token record: what Keap's token endpoint hands out and what the store keeps.

It lives here, outside both ``keap/`` and ``store/``, because both layers need the same shape
and neither depends on the other: ``keap/auth.py`` obtains and refreshes tokens,
``store/`` persists them, and ``service.py`` wires one to the other. ``connector.keap.tokens``
re-exports it for the auth code and its callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr


@dataclass(frozen=True)
class OAuthToken:
    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: datetime
    scope: str = ""
    token_type: str = "bearer"
    # When Keap issued this pair (the refresh token's birth); ``None`` when not known. Keap
    # lets a refresh token die after 45 days unused, so its age says when to renew it.
    issued_at: datetime | None = None

    def expires_within(self, margin: timedelta, now: datetime) -> bool:
        return self.expires_at - margin <= now
