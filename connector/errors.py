"""The connector's one exception hierarchy.

Errors are grouped by what the caller should do next, not by where they come from:

- ``RetryableError``: the same call may succeed later; back off and try again.
- ``ReauthRequiredError``: the credentials are gone or revoked; run ``connector auth login``.
- ``InputError``: something the user supplied (settings, policy, a callback) is wrong; fix it.
- ``PermanentError``: this item cannot succeed as asked; record why and give up on it.

Errors that come from a Keap response also carry ``keap``, a ``KeapResponseInfo`` (status,
``x-request-id`` and a truncated body) so an operator can quote them to Keap support. Messages
never contain a token, key or secret: the code that raises them passes only sanitised text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class KeapResponseInfo:
    """What an operator needs to quote a failed Keap call; never includes credentials."""

    method: str
    path: str
    status: int | None
    request_id: str | None
    body: str

    def describe(self) -> str:
        status = "no response" if self.status is None else str(self.status)
        rid = f", request id {self.request_id}" if self.request_id else ""
        body = f": {self.body}" if self.body else ""
        return f"Keap {self.method} {self.path} -> {status}{rid}{body}"


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    default_hint: ClassVar[str] = ""

    def __init__(
        self, message: str, *, hint: str | None = None, keap: KeapResponseInfo | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        self.keap = keap

    def __str__(self) -> str:
        text = self.message
        if self.keap is not None:
            text = f"{text}: {self.keap.describe()}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


# --- retry ----------------------------------------------------------------------------------


class RetryableError(ConnectorError):
    """Transient: the same operation may succeed if tried again later."""

    default_hint = "this is usually temporary; it will be retried"


class KeapUnavailableError(RetryableError):
    """Keap answered 5xx, or the connection failed or timed out."""


class KeapThrottledError(RetryableError):
    """Keap answered 429: the throttle or the daily quota is spent."""

    default_hint = "Keap's rate limit was hit; lower KEAP_REQUESTS_PER_SECOND if this persists"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
        keap: KeapResponseInfo | None = None,
    ) -> None:
        super().__init__(message, hint=hint, keap=keap)
        self.retry_after = retry_after


class OutcomeUnknownError(RetryableError):
    """A non-idempotent write was sent but its answer was lost; check Keap before resending."""

    default_hint = "the write may or may not have happened; it is checked before any resend"


class StoreUnavailableError(RetryableError):
    """The durable store could not be written (locked, read-only, disk full, unreachable)."""

    default_hint = "check the database's disk space, permissions and CONNECTOR_DATABASE_URL"


# --- re-authenticate ------------------------------------------------------------------------


class ReauthRequiredError(ConnectorError):
    """The stored credentials cannot be used any more; a human must sign in again."""

    default_hint = "run `connector auth login` (or set a valid KEAP_API_KEY)"


class NotAuthenticatedError(ReauthRequiredError):
    """No credentials at all: neither an API key nor stored OAuth tokens."""


class TokenRevokedError(ReauthRequiredError):
    """Keap's token endpoint answered ``invalid_grant``: the refresh token is dead."""


class KeapUnauthorizedError(ReauthRequiredError):
    """Keap answered 401 even with fresh credentials."""


# --- fix input ------------------------------------------------------------------------------


class InputError(ConnectorError):
    """Something the user supplied is invalid; nothing will work until it is corrected."""


class ConfigError(InputError):
    """A setting (environment variable or .env line) is missing or malformed."""

    default_hint = "fix the setting in the environment or .env; see .env.example"


class PolicyError(InputError):
    """The policy file is malformed or contradicts itself."""

    default_hint = "run `connector policy check` to see every problem"


class BounceTypeError(InputError):
    """A bounce type that is not one of Keap's."""


class CallbackError(InputError):
    """A webhook callback that cannot be turned into an event."""


class SyncRefusedError(InputError):
    """Another ``connector sync`` holds the run lock."""

    default_hint = "wait for it to finish, or stop it; a dead run's lock expires after 2 minutes"


class AuthFlowError(InputError):
    """The OAuth2 authorization step was answered wrongly (bad code, state mismatch)."""

    default_hint = "start again with `connector auth login`"


# --- give up --------------------------------------------------------------------------------


class PermanentError(ConnectorError):
    """This operation cannot succeed as asked; retrying will not help."""


class KeapRequestError(PermanentError):
    """Keap rejected the request itself (400, 405, 409, 422)."""

    default_hint = "this is a bug in the connector or a Keap change; please report it"


class KeapForbiddenError(PermanentError):
    """Keap answered 403: the credentials are valid but lack permission."""

    default_hint = "use credentials of a Keap admin, or grant the user API access"


class PagingStalledError(PermanentError):
    """Keap's paging made no progress: a page token handed out twice, or endless pages.

    Raised by the Keap client (a repeated token) and by the sync's paging guard (pages far
    beyond the account's size), so a listing never ends quietly half-read, nor runs for ever.
    """

    default_hint = (
        "Keap's listing is misbehaving; the checkpoint is kept, try again later "
        "or report it to Keap support with the request ids in the log"
    )


class KeapNotFoundError(PermanentError):
    """The contact, tag or address does not exist (any more) in Keap."""
