"""Credentials for Keap: an API key, or OAuth2 tokens that rotate on every refresh.

Keap kills the old refresh token the moment it issues a new one, and two refreshes racing with the
same token leave the loser (and often the whole installation) logged out. So a refresh here is
single-flight inside the process (an asyncio lock) *and* across processes (the token store's
``refresh_lock``), re-reads the stored token inside both locks (someone else may have refreshed
already), and saves the new token before the new access token is used for anything.

requests-oauthlib does the OAuth2 protocol work; it is synchronous, so its calls run in a thread.
It logs token bodies at DEBUG, which is why this module keeps its loggers at INFO or above.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

import requests
from oauthlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    OAuth2Error,
    UnauthorizedClientError,
)
from pydantic import SecretStr
from requests.adapters import BaseAdapter
from requests_oauthlib import OAuth2Session

from connector.config import Settings
from connector.errors import (
    AuthFlowError,
    ConfigError,
    ConnectorError,
    InputError,
    KeapUnavailableError,
    NotAuthenticatedError,
    TokenRevokedError,
)
from connector.keap.retry import keap_error
from connector.keap.tokens import OAuthToken, TokenStore
from connector.logs import register_secret, scrub

API_KEY_HEADER = "X-Keap-API-Key"
SCOPE = "full"
MAX_REFRESH_MARGIN = timedelta(minutes=5)
REFRESH_MARGIN_FRACTION = 0.1
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)
# Keap lets a refresh token die after 45 days unused (keap-api.md 1.1); Keap staff suggest
# refreshing any token older than about 30 days, bounce or no bounce.
REFRESH_TOKEN_MAX_AGE = timedelta(days=30)
ZERO = timedelta(0)
LOGIN_HINT = "run `connector auth login` to sign in to Keap again"

for _name in ("requests_oauthlib", "oauthlib"):
    # Their DEBUG lines carry request bodies and token responses; a level set on purpose stays.
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)

Now = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Credentials(Protocol):
    """What the client needs from either kind of credential."""

    @property
    def mode(self) -> Literal["api_key", "oauth"]: ...

    async def headers(self) -> dict[str, str]:
        """Headers that authenticate one request; may refresh a token first."""
        ...

    async def on_unauthorized(self, sent: Mapping[str, str]) -> bool:
        """Keap answered 401 to a request sent with ``sent``; ``True`` if a resend may work."""
        ...

    async def keep_alive(self) -> bool:
        """Renew what would expire while unused (an old refresh token); ``True`` if it did."""
        ...


class ApiKeyAuth:
    """A personal access token or service account key; Keap never expires these on its own."""

    mode: Literal["api_key"] = "api_key"

    def __init__(self, key: SecretStr) -> None:
        register_secret(key.get_secret_value())
        self._key = key

    def __repr__(self) -> str:
        return "ApiKeyAuth(key='**********')"

    async def headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self._key.get_secret_value()}

    async def on_unauthorized(self, sent: Mapping[str, str]) -> bool:
        return False

    async def keep_alive(self) -> bool:
        return False


@dataclass(frozen=True)
class OAuthApp:
    """The OAuth2 application registered with Keap (redirect URI only needed to log in)."""

    client_id: str
    client_secret: SecretStr
    token_url: str
    authorize_url: str
    redirect_uri: str | None
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthApp:
        missing = [
            name
            for name, value in (
                ("KEAP_CLIENT_ID", settings.keap_client_id),
                ("KEAP_CLIENT_SECRET", settings.keap_client_secret),
            )
            if not value
        ]
        if missing or settings.keap_client_secret is None or settings.keap_client_id is None:
            raise ConfigError(
                f"OAuth2 needs {' and '.join(missing)} (or set KEAP_API_KEY to use a key instead)"
            )
        register_secret(settings.keap_client_secret.get_secret_value())
        _allow_loopback_http(settings.keap_token_url, "KEAP_TOKEN_URL")
        return cls(
            client_id=settings.keap_client_id,
            client_secret=settings.keap_client_secret,
            token_url=settings.keap_token_url,
            authorize_url=settings.keap_authorize_url,
            redirect_uri=settings.keap_redirect_uri,
            timeout=settings.keap_timeout_seconds,
        )

    def require_redirect_uri(self) -> str:
        if not self.redirect_uri:
            raise ConfigError("KEAP_REDIRECT_URI is required to log in with OAuth2")
        return self.redirect_uri


def _allow_loopback_http(url: str, variable: str) -> None:
    """oauthlib refuses plain http; allow it only for the local sandbox, never for a real host."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if not is_loopback(parts.hostname or ""):
        raise ConfigError(f"{variable} must use https (plain http only for 127.0.0.1/localhost)")
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")


def is_loopback(host: str) -> bool:
    """Plain http is tolerated only to this machine (the sandbox); never over a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenEndpoint:
    """Keap's ``/token`` endpoint, spoken through requests-oauthlib in a worker thread.

    ``adapter`` replaces the HTTP transport (tests mount a fake token server through it).
    """

    def __init__(self, app: OAuthApp, *, adapter: BaseAdapter | None = None) -> None:
        self._app = app
        self._adapter = adapter

    @property
    def app(self) -> OAuthApp:
        return self._app

    def authorization_url(self, state: str) -> str:
        session = OAuth2Session(
            self._app.client_id,
            redirect_uri=self._app.require_redirect_uri(),
            scope=[SCOPE],
            state=state,
        )
        url, _ = session.authorization_url(self._app.authorize_url)
        return str(url)

    async def exchange(self, code: str, now: datetime) -> OAuthToken:
        """Trade an authorization code for the first token pair."""
        try:
            raw = await asyncio.to_thread(self._exchange_sync, code)
        except InvalidGrantError:
            raise AuthFlowError(
                "Keap rejected the authorization code (expired, already used, or for another "
                "redirect URI)"
            ) from None
        except (OAuth2Error, requests.RequestException) as exc:
            raise _token_failure(exc) from None
        return token_from_response(raw, now)

    async def refresh(self, token: OAuthToken, now: datetime) -> OAuthToken:
        """Spend ``token``'s refresh token (it dies now) for a new pair."""
        try:
            raw = await asyncio.to_thread(self._refresh_sync, token.refresh_token)
        except InvalidGrantError:
            raise TokenRevokedError(
                "Keap no longer accepts the stored refresh token (invalid_grant)", hint=LOGIN_HINT
            ) from None
        except (OAuth2Error, requests.RequestException) as exc:
            raise _token_failure(exc) from None
        return token_from_response(raw, now, fallback_scope=token.scope)

    def _exchange_sync(self, code: str) -> dict[str, Any]:
        session = self._session(redirect_uri=self._app.require_redirect_uri())
        return dict(
            session.fetch_token(
                self._app.token_url,
                code=code,
                client_secret=self._app.client_secret.get_secret_value(),
                include_client_id=True,
                timeout=self._app.timeout,
            )
        )

    def _refresh_sync(self, refresh_token: SecretStr) -> dict[str, Any]:
        session = self._session()
        basic = requests.auth.HTTPBasicAuth(
            self._app.client_id, self._app.client_secret.get_secret_value()
        )
        return dict(
            session.refresh_token(
                self._app.token_url,
                refresh_token=refresh_token.get_secret_value(),
                auth=basic,
                timeout=self._app.timeout,
            )
        )

    def _session(self, redirect_uri: str | None = None) -> OAuth2Session:
        # No scope on these sessions: Keap answers "full|<app>.infusionsoft.com", which oauthlib
        # would otherwise reject as a changed scope.
        session = OAuth2Session(self._app.client_id, redirect_uri=redirect_uri)
        if self._adapter is not None:
            session.mount("https://", self._adapter)
            session.mount("http://", self._adapter)
        session.register_compliance_hook("access_token_response", _reject_server_errors)
        session.register_compliance_hook("refresh_token_response", _reject_server_errors)
        return session


def _reject_server_errors(response: requests.Response) -> requests.Response:
    """oauthlib would misread a 5xx or 429 page as a malformed token; report it as what it is."""
    if response.status_code == 429 or response.status_code >= 500:
        raise keap_error(
            "POST",
            urlsplit(response.url).path or "/token",
            status=response.status_code,
            headers=response.headers,
            body=response.text,
        )
    return response


def _token_failure(exc: Exception) -> ConnectorError:
    if isinstance(exc, InvalidClientError | UnauthorizedClientError):
        return ConfigError("Keap rejected KEAP_CLIENT_ID / KEAP_CLIENT_SECRET")
    if isinstance(exc, OAuth2Error):
        detail = scrub(f"{exc.error}: {exc.description or ''}".strip(": "))
        return AuthFlowError(f"Keap's token endpoint refused the request ({detail})")
    return KeapUnavailableError(
        f"Keap's token endpoint could not be reached ({type(exc).__name__})"
    )


def token_from_response(
    raw: Mapping[str, Any], now: datetime, fallback_scope: str = ""
) -> OAuthToken:
    """Keap's token JSON as an ``OAuthToken``; secrets are registered for scrubbing at once."""
    access, refresh = raw.get("access_token"), raw.get("refresh_token")
    if not access or not refresh:
        raise AuthFlowError("Keap's token response lacks an access or refresh token")
    register_secret(str(access))
    register_secret(str(refresh))
    try:
        lifetime = timedelta(seconds=float(raw["expires_in"]))
    except (KeyError, TypeError, ValueError):
        lifetime = DEFAULT_TOKEN_LIFETIME
    scope = raw.get("scope", fallback_scope)
    return OAuthToken(
        access_token=SecretStr(str(access)),
        refresh_token=SecretStr(str(refresh)),
        expires_at=now + lifetime,
        scope=" ".join(scope) if isinstance(scope, list) else str(scope or ""),
        token_type=str(raw.get("token_type", "bearer")),
        issued_at=now,
    )


class OAuthManager:
    """Hands out a valid access token, refreshing it ahead of expiry and after a 401.

    Refreshes happen ahead of expiry by ``min(5 minutes, 10% of the token's lifetime)``. The
    lifetime of a token this process did not obtain itself is estimated from what was left of it
    when first seen, so a short-lived sandbox token is not refreshed on every call.
    """

    mode: Literal["oauth"] = "oauth"

    def __init__(self, store: TokenStore, endpoint: TokenEndpoint, *, now: Now = utcnow) -> None:
        self._store = store
        self._endpoint = endpoint
        self._now = now
        self._lock = asyncio.Lock()
        self._token: OAuthToken | None = None
        self._lifetime: tuple[datetime, float] | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuthManager(client_id={self._endpoint.app.client_id!r})"

    async def headers(self) -> dict[str, str]:
        token = await self.token()
        return {"Authorization": f"Bearer {token.access_token.get_secret_value()}"}

    async def token(self) -> OAuthToken:
        """The current token, refreshed first when it expires soon."""
        token = self._token or await self._load()
        if self._expiring(token):
            token = await self._refresh(unless_replaced=token.access_token.get_secret_value())
        return token

    async def on_unauthorized(self, sent: Mapping[str, str]) -> bool:
        sent_token = sent.get("Authorization", "").removeprefix("Bearer ")
        await self._refresh(unless_replaced=sent_token)
        return True

    async def force_refresh(self) -> OAuthToken:
        return await self._refresh(unless_replaced=None)

    async def keep_alive(self) -> bool:
        """Refresh when the refresh token is ``REFRESH_TOKEN_MAX_AGE`` old, used or not.

        Called by the worker's loop whether or not events arrive; cheap when there is nothing
        to do (the cached token's age), and single-flight like every refresh.
        """
        token = self._token or await self._load()
        if not self._aged(token):
            return False
        refreshed = await self._refresh(unless_replaced=token.access_token.get_secret_value())
        return refreshed is not token

    async def _refresh(self, *, unless_replaced: str | None) -> OAuthToken:
        """Refresh, unless the stored token differs from ``unless_replaced`` and is fresh."""
        async with self._lock, self._store.refresh_lock():
            current = await self._load()
            replaced = current.access_token.get_secret_value() != unless_replaced
            fresh_enough = not self._expiring(current) and not self._aged(current)
            if unless_replaced is not None and replaced and fresh_enough:
                return current
            fresh = await self._endpoint.refresh(current, self._now())
            await self._store.save_token(fresh)
            self.refreshes += 1
            return self._remember(fresh, (fresh.expires_at - self._now()).total_seconds())

    async def _load(self) -> OAuthToken:
        token = await self._store.load_token()
        if token is None:
            raise NotAuthenticatedError("no Keap OAuth2 token is stored", hint=LOGIN_HINT)
        register_secret(token.access_token.get_secret_value())
        register_secret(token.refresh_token.get_secret_value())
        return self._remember(token, None)

    def _remember(self, token: OAuthToken, lifetime: float | None) -> OAuthToken:
        self._token = token
        if lifetime is not None:
            self._lifetime = (token.expires_at, lifetime)
        return token

    def _aged(self, token: OAuthToken) -> bool:
        issued = token.issued_at
        return issued is not None and self._now() - issued >= REFRESH_TOKEN_MAX_AGE

    def _expiring(self, token: OAuthToken) -> bool:
        now = self._now()
        if self._lifetime is None or self._lifetime[0] != token.expires_at:
            self._lifetime = (token.expires_at, max(0.0, (token.expires_at - now).total_seconds()))
        margin = min(
            MAX_REFRESH_MARGIN, timedelta(seconds=self._lifetime[1]) * REFRESH_MARGIN_FRACTION
        )
        return token.expires_within(margin, now)


def build_credentials(
    settings: Settings,
    store: TokenStore | None,
    *,
    adapter: BaseAdapter | None = None,
    now: Now = utcnow,
) -> ApiKeyAuth | OAuthManager:
    """The credentials the settings call for: the API key when set, else stored OAuth2 tokens."""
    if settings.keap_api_key is not None:
        return ApiKeyAuth(settings.keap_api_key)
    if not settings.keap_client_id:
        raise NotAuthenticatedError(
            "no Keap credentials: set KEAP_API_KEY, or KEAP_CLIENT_ID and KEAP_CLIENT_SECRET "
            "and run `connector auth login`"
        )
    if store is None:
        raise NotAuthenticatedError("OAuth2 needs a token store", hint=LOGIN_HINT)
    endpoint = TokenEndpoint(OAuthApp.from_settings(settings), adapter=adapter)
    return OAuthManager(store, endpoint, now=now)


# --- the core of `connector auth ...` -------------------------------------------------------


@dataclass(frozen=True)
class AuthStatus:
    """What ``connector auth status`` shows; by construction it holds no token."""

    mode: Literal["api_key", "oauth", "none"]
    logged_in: bool
    expires_at: datetime | None = None
    expired: bool = False
    scope: str = ""
    refresh_token_age: timedelta | None = None

    @property
    def summary(self) -> str:
        if self.mode == "api_key":
            return "API key (KEAP_API_KEY)"
        if not self.logged_in:
            return f"not logged in; {LOGIN_HINT}"
        state = "expired" if self.expired else "valid"
        return f"OAuth2 access token {state} until {self.expires_at:%Y-%m-%d %H:%M:%S %Z}"

    @property
    def refresh_line(self) -> str:
        """The refresh token's age (never the token); empty without OAuth2 tokens."""
        age = self.refresh_token_age
        if self.mode != "oauth" or not self.logged_in:
            return ""
        if age is None:
            return "refresh token age unknown"
        days = age.days
        return (
            f"refresh token {days} day{'' if days == 1 else 's'} old (Keap drops it after 45 days "
            f"unused; the worker renews it at {REFRESH_TOKEN_MAX_AGE.days})"
        )


async def begin_login(settings: Settings, store: TokenStore) -> str:
    """Remember a fresh ``state`` and return the URL the user opens to authorize the app."""
    url, _ = await start_login(settings, store)
    return url


async def start_login(settings: Settings, store: TokenStore) -> tuple[str, str]:
    """``begin_login``, also returning the ``state`` (to wait for this login's outcome)."""
    endpoint = TokenEndpoint(OAuthApp.from_settings(settings))
    state = secrets.token_urlsafe(24)
    url = endpoint.authorization_url(state)
    await store.save_login_state(state)
    return url, state


def parse_login_answer(answer: str) -> tuple[str, str | None]:
    """``(code, state)`` from either a bare code or the full URL Keap redirected to."""
    text = answer.strip()
    if not text:
        raise AuthFlowError("no authorization code given")
    if "://" not in text and "code=" not in text and "error=" not in text:
        return text, None
    query = urlsplit(text).query if "://" in text else text.lstrip("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if params.get("error"):
        raise AuthFlowError(f"Keap did not authorize the app ({scrub(params['error'])})")
    if not params.get("code"):
        raise AuthFlowError("the redirect URL carries no authorization code")
    return params["code"], params.get("state")


async def complete_login(
    settings: Settings,
    store: TokenStore,
    answer: str,
    *,
    adapter: BaseAdapter | None = None,
    now: Now = utcnow,
    outcomes: LoginOutcomes | None = None,
) -> AuthStatus:
    """Exchange the code from ``answer`` and store the tokens (and, with ``outcomes``, tell an
    ``auth login`` waiting on this login that it ended).

    Only for a login this installation started (``begin_login`` keeps its ``state``): a code
    with none started could be anyone's (a login CSRF), so it is refused before Keap is asked.
    A redirect URL's ``state`` must be the started login's; a bare code is taken as its answer.
    """
    code, state = parse_login_answer(answer)
    register_secret(code)
    expected = await store.take_login_state()
    if expected is None:
        raise AuthFlowError(
            "no login was started here (no OAuth state to check the code against): run "
            "`connector auth "
            "login` (or `connector auth login --print-url`) first, then pass the code or the "
            "whole redirect URL"
        )
    if state is not None and not secrets.compare_digest(state, expected):
        raise AuthFlowError("the redirect URL's state does not match the login that was started")
    endpoint = TokenEndpoint(OAuthApp.from_settings(settings), adapter=adapter)
    token = await endpoint.exchange(code, now())
    await store.save_token(token)
    if outcomes is not None:
        await outcomes.save_checkpoint(LOGIN_OUTCOME, f"{_state_tag(expected)} ok")
    return _status_of(token, now())


# --- the redirect, answered by `connector serve` ---------------------------------------------

# How the login of one ``state`` ended, for an ``auth login`` waiting on it in another process:
# a row of the store's checkpoints, ``"<tag of the state> ok"`` or ``"<tag> error: <reason>"``.
# The tag is a hash, so the row never holds the state itself.
LOGIN_OUTCOME = "oauth-login-outcome"
LOGIN_POLL_SECONDS = 1.0


class LoginOutcomes(Protocol):
    """Where a finished login is recorded (the store's checkpoints)."""

    async def save_checkpoint(self, name: str, data: str) -> None: ...

    async def load_checkpoint(self, name: str) -> str | None: ...

    async def clear_checkpoint(self, name: str) -> None: ...


def _state_tag(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class RedirectOutcome:
    """What the redirect page says. ``refused``: not this installation's login (a missing or
    wrong ``state``); nothing was stored and the login started here, if any, stays open."""

    ok: bool
    message: str
    refused: bool = False
    status: AuthStatus | None = None


async def finish_redirect(
    settings: Settings,
    store: TokenStore,
    outcomes: LoginOutcomes,
    params: Mapping[str, str],
    *,
    adapter: BaseAdapter | None = None,
    now: Now = utcnow,
) -> RedirectOutcome:
    """Keap sent the browser back to ``KEAP_REDIRECT_URI`` with ``params`` (code, state, or
    error): check ``state`` against the login ``auth login``/``init`` started, exchange the code,
    store the tokens, and record the outcome for the ``auth login`` waiting on it.

    A missing or wrong ``state`` is refused before anything else: the code could be anyone's
    (a login CSRF). A wrong one puts the started login's state back, so a stray or forged
    link cannot cancel the real login.
    """
    state = params.get("state", "")
    if not state:
        return RedirectOutcome(False, "the redirect carries no state", refused=True)
    expected = await store.take_login_state()
    if expected is None:
        return RedirectOutcome(
            False, "no login is waiting here (or it has finished already)", refused=True
        )
    if not secrets.compare_digest(state.encode("utf-8"), expected.encode("utf-8")):
        await store.save_login_state(expected)
        return RedirectOutcome(
            False, "the state does not match the login that was started", refused=True
        )
    tag = _state_tag(expected)
    try:
        if params.get("error"):
            raise AuthFlowError(f"Keap did not authorize the app ({scrub(params['error'])})")
        code = params.get("code", "")
        if not code:
            raise AuthFlowError("the redirect carries no authorization code")
        register_secret(code)
        endpoint = TokenEndpoint(OAuthApp.from_settings(settings), adapter=adapter)
        token = await endpoint.exchange(code, now())
        await store.save_token(token)
    except ConnectorError as exc:
        reason = scrub(exc.message)
        await outcomes.save_checkpoint(LOGIN_OUTCOME, f"{tag} error: {reason}")
        return RedirectOutcome(False, reason)
    await outcomes.save_checkpoint(LOGIN_OUTCOME, f"{tag} ok")
    status = _status_of(token, now())
    return RedirectOutcome(True, status.summary, status=status)


async def wait_for_login(
    store: TokenStore,
    outcomes: LoginOutcomes,
    state: str,
    *,
    wait_seconds: float,
    poll: float = LOGIN_POLL_SECONDS,
    now: Now = utcnow,
) -> AuthStatus:
    """Until the login of ``state`` ends (the redirect page or ``auth login --code``), polling
    the store; at most ``wait_seconds``. The login stays open after a timeout."""
    tag = _state_tag(state)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        recorded = await outcomes.load_checkpoint(LOGIN_OUTCOME)
        if recorded is not None and recorded.startswith(tag + " "):
            await outcomes.clear_checkpoint(LOGIN_OUTCOME)
            result = recorded.removeprefix(tag + " ")
            if result != "ok":
                raise AuthFlowError(result.removeprefix("error: "))
            token = await store.load_token()
            if token is None:
                raise AuthFlowError("the login finished but no token is stored")
            return _status_of(token, now())
        if loop.time() >= deadline:
            raise AuthFlowError(
                f"no answer from Keap within {wait_seconds:.0f} s",
                hint="the login stays open: open the URL again, or finish it with "
                "`connector auth login --code URL`",
            )
        await asyncio.sleep(poll)


async def auth_status(
    settings: Settings, store: TokenStore | None, *, now: Now = utcnow
) -> AuthStatus:
    if settings.keap_api_key is not None:
        return AuthStatus(mode="api_key", logged_in=True)
    if not settings.keap_client_id or store is None:
        return AuthStatus(mode="none", logged_in=False)
    token = await store.load_token()
    if token is None:
        return AuthStatus(mode="oauth", logged_in=False)
    return _status_of(token, now())


async def refresh_now(
    settings: Settings,
    store: TokenStore,
    *,
    adapter: BaseAdapter | None = None,
    now: Now = utcnow,
) -> AuthStatus:
    """Refresh the OAuth2 token now, whatever its expiry (``connector auth refresh``)."""
    credentials = build_credentials(settings, store, adapter=adapter, now=now)
    if not isinstance(credentials, OAuthManager):
        raise InputError("an API key (KEAP_API_KEY) is in use; there is no token to refresh")
    return _status_of(await credentials.force_refresh(), now())


async def logout(store: TokenStore) -> None:
    """Forget the stored tokens and any pending login (``connector auth logout``)."""
    await store.clear_token()
    await store.take_login_state()


def _status_of(token: OAuthToken, now: datetime) -> AuthStatus:
    return AuthStatus(
        mode="oauth",
        logged_in=True,
        expires_at=token.expires_at,
        expired=token.expires_at <= now,
        scope=token.scope,
        refresh_token_age=None if token.issued_at is None else max(now - token.issued_at, ZERO),
    )
