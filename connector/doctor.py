"""``connector doctor``: is this installation able to do its job, and if not, what to change.

Each check answers one question an operator would otherwise find out from a failed callback at
3 a.m.: are the settings coherent, can the store be written, does Keap accept the credentials,
does the policy load, and is Keap's rate budget spent. A failure carries the one change that
fixes it; a warning is something that works today but will surprise someone later.

The doctor only reads, except for two harmless writes: a probe row in the store (a store that
cannot be written loses callbacks) and, for OAuth2, the token refresh any Keap call does when the
access token has expired.
"""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from connector.config import Settings, load_settings, unknown_variables
from connector.errors import (
    ConfigError,
    ConnectorError,
    KeapThrottledError,
    NotAuthenticatedError,
    RetryableError,
)
from connector.keap.auth import ApiKeyAuth, OAuthManager, build_credentials, is_loopback
from connector.keap.client import KeapClient
from connector.keap.retry import LOW_BUDGET_FRACTION, THROTTLE_HEADER_PREFIXES, RetryPolicy
from connector.logs import scrub
from connector.policy import load_policy
from connector.service import register_secrets
from connector.store import Store, open_store
from connector.store.sqlite import sqlite_path

PROBE_CHECKPOINT = "doctor-probe"
KEAP_CHECK_SECONDS = 30.0
MIN_SECRET_CHARS = 16
_SECRET_HINT = 'generate one: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
_UNREACHABLE_FIX = "check KEAP_API_BASE_URL, the network, and Keap's status page"
_UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True)
class Check:
    """One line of the report; ``warning`` marks a passing check that still deserves a look."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False

    @property
    def status(self) -> str:
        if not self.ok:
            return "FAIL"
        return "warn" if self.warning else "ok"


def _passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _warned(name: str, detail: str, fix: str) -> Check:
    return Check(name, True, detail, fix, warning=True)


def _failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def _reason(exc: ConnectorError) -> str:
    """The error without its hint (the hint becomes the fix), scrubbed of any secret."""
    text = exc.message if exc.keap is None else f"{exc.message}: {exc.keap.describe()}"
    return scrub(text)


def render(checks: list[Check]) -> str:
    """One line per check, the fix on the same line, so the output greps and pastes well."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for check in checks:
        line = f"{check.status:<4}  {check.name:<{width}}  {check.detail}"
        if check.fix and check.status != "ok":
            line += f" -- fix: {check.fix}"
        lines.append(scrub(line))
    return "\n".join(lines)


def failed_any(checks: list[Check]) -> bool:
    return any(not c.ok for c in checks)


async def diagnose(load: Callable[[], Settings] = load_settings) -> list[Check]:
    """Load the settings and run every check; unreadable settings are themselves a failure."""
    try:
        settings = load()
    except ConfigError as exc:
        unknown = unknown_variables()
        detail = "; ".join([_reason(exc), *(u.describe() for u in unknown)])
        return [_failed("settings", detail, "; ".join([exc.hint, *(u.fix for u in unknown)]))]
    return await run_checks(settings)


async def run_checks(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[Check]:
    """Every check, in the order a fix is best applied: settings first, Keap last.

    ``transport`` replaces the network under the Keap call (tests); by default it is httpx's.
    """
    register_secrets(settings)
    checks = [_check_settings(settings), _check_webhook(settings), _check_policy(settings)]
    store, database = await _check_database(settings)
    checks += database
    try:
        checks += await _check_keap(settings, store, transport)
    finally:
        if store is not None:
            await store.close()
    return checks


# --- settings ----------------------------------------------------------------------------


def _plain_http(url: str) -> bool:
    """Plain http to anything but this machine sends credentials in clear over the network."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname or "")


def _setting_failures(settings: Settings) -> list[tuple[str, str]]:
    # DESIGN.md 4: a KEAP_*/CONNECTOR_* name no setting reads is a typo until shown otherwise.
    failures = [(u.describe(), u.fix) for u in unknown_variables()]
    if not settings.uses_api_key and not settings.keap_client_id:
        failures.append(
            (
                "no Keap credentials",
                "set KEAP_API_KEY, or KEAP_CLIENT_ID and KEAP_CLIENT_SECRET",
            )
        )
    if not settings.uses_api_key and settings.keap_client_id and not settings.keap_client_secret:
        failures.append(("KEAP_CLIENT_ID without KEAP_CLIENT_SECRET", "set KEAP_CLIENT_SECRET"))
    for variable in ("KEAP_API_BASE_URL", "KEAP_TOKEN_URL", "KEAP_AUTHORIZE_URL"):
        if _plain_http(getattr(settings, variable.lower())):
            failures.append(
                (f"{variable} is plain http to a remote host", f"use https:// in {variable}")
            )
    return failures


def _setting_warnings(settings: Settings) -> list[tuple[str, str]]:
    warnings = []
    oauth = not settings.uses_api_key and bool(settings.keap_client_id)
    if oauth and not settings.keap_redirect_uri:
        warnings.append(
            (
                "OAuth2 without KEAP_REDIRECT_URI (`auth login` will refuse)",
                "set KEAP_REDIRECT_URI to the app's registered redirect URI",
            )
        )
    if settings.uses_api_key and settings.keap_client_id:
        warnings.append(
            (
                "both KEAP_API_KEY and KEAP_CLIENT_ID are set; the API key wins",
                "remove the credentials you do not mean to use",
            )
        )
    if settings.connector_dry_run:
        warnings.append(("CONNECTOR_DRY_RUN is on: nothing is written to Keap", "unset it"))
    return warnings


def _check_settings(settings: Settings) -> Check:
    failures = _setting_failures(settings)
    if failures:
        return _failed(
            "settings", "; ".join(d for d, _ in failures), "; ".join(f for _, f in failures)
        )
    warnings = _setting_warnings(settings)
    if warnings:
        return _warned(
            "settings", "; ".join(d for d, _ in warnings), "; ".join(f for _, f in warnings)
        )
    mode = "API key" if settings.uses_api_key else f"OAuth2 app {settings.keap_client_id}"
    return _passed("settings", f"{mode}, Keap at {settings.keap_api_base_url}")


def _check_webhook(settings: Settings) -> Check:
    secret = settings.connector_webhook_secret
    if secret is None:
        return _warned(
            "webhook secret",
            "CONNECTOR_WEBHOOK_SECRET is not set: `serve` will refuse to start",
            _SECRET_HINT,
        )
    if len(secret.get_secret_value()) < MIN_SECRET_CHARS:
        return _warned(
            "webhook secret",
            f"CONNECTOR_WEBHOOK_SECRET is shorter than {MIN_SECRET_CHARS} characters",
            _SECRET_HINT,
        )
    https = "required" if settings.connector_require_https else "not required"
    return _passed("webhook secret", f"set; HTTPS {https} (CONNECTOR_REQUIRE_HTTPS)")


def _check_policy(settings: Settings) -> Check:
    path = settings.connector_policy_file
    if not path.exists():
        return _passed("policy", f"no {path}: the built-in default policy is in use")
    try:
        policy = load_policy(path)
    except ConnectorError as exc:
        return _failed(
            "policy",
            _reason(exc),
            f"run `connector policy check {path}`; a running `serve` keeps the rules it read "
            "before until the file loads again",
        )
    return _passed("policy", f"{path}: {len(policy.rules)} rule(s)")


# --- the store ---------------------------------------------------------------------------


def _display_url(url: str) -> str:
    """The database URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _missing_sqlite_file(url: str) -> Path | None:
    """A SQLite file that does not exist yet; opening it would quietly create an empty one."""
    if not url.lower().startswith("sqlite:"):
        return None
    try:
        path = sqlite_path(url)
    except ValueError:
        return None
    return None if path.exists() else path


async def _check_database(settings: Settings) -> tuple[Store | None, list[Check]]:
    url = settings.connector_database_url
    shown = _display_url(url)
    missing = _missing_sqlite_file(url)
    if missing is not None:
        return None, [
            _failed("database", f"{missing} does not exist", "run `connector db migrate`")
        ]
    try:
        store = await open_store(url, check=False)
    except (ConnectorError, OSError) as exc:
        reason = _reason(exc) if isinstance(exc, ConnectorError) else scrub(str(exc))
        return None, [_failed("database", f"{shown}: {reason}", "check CONNECTOR_DATABASE_URL")]
    checks = [await _probe_store(store, shown)]
    if store.dialect == "sqlite":
        checks.append(_check_file_modes(sqlite_path(url)))
    return store, checks


async def _probe_store(store: Store, shown: str) -> Check:
    """Reachable, migrated, and writable: a store that cannot write loses callbacks."""
    try:
        pending = await store.pending_migrations()
        if pending:
            return _failed(
                "database",
                f"{shown}: {len(pending)} pending migration(s) ({', '.join(pending)})",
                "run `connector db migrate`",
            )
        await store.save_checkpoint(PROBE_CHECKPOINT, datetime.now(UTC).isoformat())
        await store.clear_checkpoint(PROBE_CHECKPOINT)
    except ConnectorError as exc:
        return _failed(
            "database",
            f"{shown}: {_reason(exc)}",
            "check the database's disk space and permissions",
        )
    return _passed("database", f"{shown}: reachable, writable, migrations current")


def _check_file_modes(path: Path) -> Check:
    """The SQLite file holds OAuth tokens and contact emails: only its owner may read it."""
    siblings = ("", "-wal", "-shm", ".refresh.lock")
    files = [path.with_name(path.name + suffix) for suffix in siblings]
    loose = [f for f in files if f.exists() and stat.S_IMODE(f.stat().st_mode) & 0o077]
    if not loose:
        return _passed("database permissions", f"{path} readable by its owner only")
    modes = ", ".join(f"{f.name} {stat.S_IMODE(f.stat().st_mode):04o}" for f in loose)
    return _failed(
        "database permissions",
        f"readable by other users: {modes}",
        f"chmod 600 {' '.join(str(f) for f in loose)}",
    )


# --- Keap --------------------------------------------------------------------------------


class _HeaderRecorder(httpx.AsyncBaseTransport):
    """Keeps the headers of the last answer, where Keap reports its remaining rate budget."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.headers: Mapping[str, str] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.headers = response.headers
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _check_keap(
    settings: Settings, store: Store | None, transport: httpx.AsyncBaseTransport | None
) -> list[Check]:
    try:
        credentials = build_credentials(settings, store)
    except NotAuthenticatedError as exc:
        if store is None and settings.keap_client_id and not settings.uses_api_key:
            reason = "skipped: OAuth2 tokens live in the database, which failed its check"
            return [_failed("keap credentials", reason, "fix the database first")]
        return [_failed("keap credentials", _reason(exc), exc.hint)]
    except ConnectorError as exc:
        return [_failed("keap credentials", _reason(exc), exc.hint)]
    checks = []
    if isinstance(credentials, OAuthManager) and store is not None:
        token = await _check_token(store)
        checks.append(token)
        if not token.ok:
            return checks
    recorder = _HeaderRecorder(transport or httpx.AsyncHTTPTransport())
    call = await _check_call(settings, credentials, recorder)
    checks.append(call)
    headers = recorder.headers
    if headers is not None and (call.ok or _budgets(headers)):
        checks.append(check_throttle(headers, settings.requests_per_second))
    return checks


async def _check_token(store: Store) -> Check:
    try:
        token = await store.load_token()
    except ConnectorError as exc:
        return _failed("oauth token", _reason(exc), exc.hint)
    if token is None:
        return _failed("oauth token", "not logged in", "run `connector auth login`")
    left = token.expires_at - datetime.now(UTC)
    when = f"{token.expires_at:%Y-%m-%d %H:%M:%S %Z}"
    if left.total_seconds() <= 0:
        return _warned(
            "oauth token",
            f"access token expired at {when}; the next call refreshes it",
            "none needed if the Keap check below passes; else `connector auth login`",
        )
    return _passed(
        "oauth token", f"access token valid until {when} ({_span(left.total_seconds())})"
    )


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min left"
    return f"{minutes // 60} h {minutes % 60} min left"


async def _check_call(
    settings: Settings, credentials: ApiKeyAuth | OAuthManager, recorder: _HeaderRecorder
) -> Check:
    """One cheap authenticated read: the first contact id, a page of one."""
    retry = RetryPolicy.from_settings(settings, max_attempts=2, max_seconds=10.0)
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(KEAP_CHECK_SECONDS),
            KeapClient(settings, credentials, retry=retry, transport=recorder) as client,
        ):
            await anext(client.iter_contacts(page_size=1, fields=("id",)), None)
    except TimeoutError:
        return _failed(
            "keap credentials",
            f"Keap did not answer within {KEAP_CHECK_SECONDS:.0f} s",
            _UNREACHABLE_FIX,
        )
    except KeapThrottledError as exc:
        return _failed(
            "keap credentials", _reason(exc), "wait a minute; lower KEAP_REQUESTS_PER_SECOND"
        )
    except RetryableError as exc:
        # Its hint ("it will be retried") is for the worker; here the user has to act.
        return _failed("keap credentials", _reason(exc), _UNREACHABLE_FIX)
    except ConnectorError as exc:
        return _failed("keap credentials", _reason(exc), exc.hint or _UNREACHABLE_FIX)
    elapsed = (time.monotonic() - started) * 1000
    refreshed = " after refreshing the token" if getattr(credentials, "refreshes", 0) else ""
    return _passed(
        "keap credentials",
        f"{credentials.mode} accepted{refreshed}: GET /contacts answered in {elapsed:.0f} ms",
    )


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class _Budget:
    kind: str
    available: float
    limit: float | None
    per_seconds: float | None

    def describe(self) -> str:
        if self.limit is None:
            return f"{self.kind} {self.available:.0f} available"
        per = "" if self.per_seconds is None else f" per {self.per_seconds:g} s"
        return f"{self.kind} {self.available:.0f}/{self.limit:.0f}{per} available"

    @property
    def per_second(self) -> float | None:
        """Keap's ceiling in requests per second, when the headers say enough to tell."""
        if self.limit is None or not self.per_seconds:
            return None
        return self.limit / self.per_seconds

    @property
    def low(self) -> bool:
        return self.limit is not None and self.available < self.limit * LOW_BUDGET_FRACTION


def _budgets(headers: Mapping[str, str]) -> list[_Budget]:
    budgets = []
    for prefix in THROTTLE_HEADER_PREFIXES:
        available = _header_number(headers, f"{prefix}-available")
        if available is None:
            continue
        unit = _UNIT_SECONDS.get(headers.get(f"{prefix}-time-unit", "").lower())
        interval = _header_number(headers, f"{prefix}-interval") or 1.0
        per = None if unit is None else unit * interval
        kind = prefix.removeprefix("x-keap-").removesuffix("-throttle")
        budgets.append(_Budget(kind, available, _header_number(headers, f"{prefix}-limit"), per))
    return budgets


def check_throttle(headers: Mapping[str, str], requests_per_second: float) -> Check:
    """Headroom from Keap's ``x-keap-*-throttle-*`` headers: spent fails, below 20 % warns."""
    budgets = _budgets(headers)
    if not budgets:
        return _warned(
            "keap throttle",
            "Keap sent no x-keap-*-throttle headers; headroom unknown",
            "none needed: the client still backs off on 429 answers",
        )
    detail = "; ".join(b.describe() for b in budgets)
    spend = "wait for Keap's window to reset; if it recurs, lower KEAP_REQUESTS_PER_SECOND or "
    spend += "find the other integration using the same Keap app"
    if any(b.available <= 0 for b in budgets):
        return _failed("keap throttle", f"budget spent: {detail}", spend)
    if any(b.low for b in budgets):
        return _warned("keap throttle", f"budget low: {detail}", spend)
    ceiling = min((b.per_second for b in budgets if b.per_second is not None), default=None)
    if ceiling is not None and requests_per_second > ceiling:
        return _warned(
            "keap throttle",
            f"KEAP_REQUESTS_PER_SECOND={requests_per_second:g} is above Keap's {ceiling:g}/s; "
            + detail,
            f"set KEAP_REQUESTS_PER_SECOND={ceiling:g} or lower",
        )
    return _passed("keap throttle", detail)
