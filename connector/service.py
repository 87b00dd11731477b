"""Assembles the running connector from settings: store, credentials, Keap client, policy, worker.

``serve`` runs the webhook and (unless told not to) the worker in one event loop; ``worker`` runs
the worker alone. Both stop cleanly on SIGINT/SIGTERM: the current events finish or keep their
lease, so nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import uvicorn
from starlette.routing import BaseRoute

from connector.alerts import AlertSender, channels_from_settings
from connector.config import Settings
from connector.errors import ConfigError
from connector.keap.auth import ApiKeyAuth, OAuthManager, build_credentials
from connector.keap.client import KeapClient
from connector.keap.pacing import SharedRateLimiter
from connector.logs import register_secret
from connector.metrics import Metrics
from connector.policy import Policy
from connector.policy.reload import POLL_SECONDS, PolicyHolder
from connector.store import Store, open_store
from connector.webhook import WebhookConfig, create_app
from connector.worker import DrainResult, Worker, WorkerOptions

log = logging.getLogger("connector.service")


def register_secrets(settings: Settings) -> None:
    """Tell the log scrubber every secret the settings hold."""
    for secret in (
        settings.keap_api_key,
        settings.keap_client_secret,
        settings.connector_webhook_secret,
        settings.connector_smtp_password,
        settings.connector_alert_webhook_url,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())
    if settings.connector_alert_webhook_url is not None:
        # The path and query of an alert webhook are its secret (Slack's hooks.slack.com/...).
        parts = urlsplit(settings.connector_alert_webhook_url.get_secret_value())
        register_secret(parts.path.strip("/") or None)
        register_secret(parts.query or None)


@asynccontextmanager
async def opened_store(
    settings: Settings,
    *,
    migrate: bool = False,
    check: bool = True,
    create_if_empty: bool = False,
) -> AsyncIterator[Store]:
    """The configured store, closed on exit; see ``open_store`` for the options.

    Commands that only read or inspect (``events``, ``audit``, ``report``, ``auth``...) keep
    the default: a store without its schema is refused with the ``connector db migrate`` hint.
    """
    store = await open_store(
        settings.connector_database_url,
        migrate=migrate,
        check=check,
        create_if_empty=create_if_empty,
    )
    try:
        yield store
    finally:
        await store.close()


@dataclass
class Runtime:
    settings: Settings
    store: Store
    policies: PolicyHolder  # the policy file, reread when it changes (serve, worker)
    client: KeapClient
    credentials: ApiKeyAuth | OAuthManager
    metrics: Metrics

    @property
    def policy(self) -> Policy:
        """The policy in force now (``sync`` plans a whole run with the one it starts with)."""
        return self.policies.current

    def worker(self, *, dry_run: bool | None = None) -> Worker:
        settings = self.settings
        options = WorkerOptions(
            concurrency=settings.connector_worker_concurrency,
            max_attempts=settings.connector_max_event_attempts,
            dry_run=settings.connector_dry_run if dry_run is None else dry_run,
            lease=timedelta(seconds=settings.connector_lease_seconds),
        )
        return Worker(self.store, self.client, self.policies, self.metrics, options)

    def alert_sender(self) -> AlertSender:
        """Delivers the alert outbox beside the worker (DESIGN 7a); no channel: it still
        watches the backlog, and alerts wait in the store for ``connector alerts list``."""
        return AlertSender(self.store, channels_from_settings(self.settings))


@asynccontextmanager
async def runtime(settings: Settings, *, create_if_empty: bool = True) -> AsyncIterator[Runtime]:
    """Everything a command that talks to Keap needs, closed in reverse order on exit.

    ``serve``, ``worker`` and ``sync`` run through here, and DESIGN 5 has them create the
    schema of a brand-new, empty store themselves (a first ``serve`` needs no ``db migrate``),
    hence the default. A store that has tables but pending migrations is still refused with
    the ``connector db migrate`` hint. ``undo`` should pass ``create_if_empty=False``: there
    is nothing to undo in a new store, so it should say so rather than create one.
    """
    register_secrets(settings)
    policies = PolicyHolder(settings.connector_policy_file)
    async with opened_store(settings, create_if_empty=create_if_empty) as store:
        credentials = build_credentials(settings, store)
        # Keap's ceiling is per credential across every process, so pace through the store.
        limiter = SharedRateLimiter(settings.requests_per_second, store, cautious_start=True)
        async with KeapClient(settings, credentials, limiter=limiter) as client:
            yield Runtime(settings, store, policies, client, credentials, Metrics())


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` stops the server and the worker."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def _reload_on_sighup(policies: PolicyHolder) -> None:
    def reread() -> None:
        log.info("SIGHUP: rereading %s", policies.path.name)
        policies.reload()

    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reread)


async def watch_policy(policies: PolicyHolder, stop: asyncio.Event) -> None:
    """Reread the policy file when it changes (a ``stat`` every few seconds) until ``stop``;
    the worker also checks before each event, this keeps ``/readyz`` current when idle."""
    while not stop.is_set():
        policies.check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)


def listen(host: str, port: int) -> socket.socket:
    """Bind the webhook's socket before anything else starts, so a taken port, a bad host or a
    refused privilege is one ``ConfigError`` line, not uvicorn's traceback after a banner."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, OverflowError, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {_reason(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        hint = (
            "another process is listening there; pick another --port"
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
            else None
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {_reason(exc)}", hint=hint) from None
    return sock


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).lower()


async def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    with_worker: bool,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the webhook (and the worker); ``announce`` gets the URL once the port listens.

    Every start-up check comes first (the secret, the port, the store, the policy), so a
    failure is one error and nothing was announced.
    """
    secret = settings.connector_webhook_secret
    if secret is None:
        raise ConfigError(
            "CONNECTOR_WEBHOOK_SECRET is not set; `serve` refuses to accept unauthenticated calls",
            hint='generate one: python3 -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    sock = listen(host, port)
    try:
        await _serve(settings, secret.get_secret_value(), sock, with_worker, announce)
    finally:
        sock.close()


async def _serve(
    settings: Settings,
    secret: str,
    sock: socket.socket,
    with_worker: bool,
    announce: Callable[[str], None] | None,
) -> None:
    async with runtime(settings) as rt:
        stop, wake = asyncio.Event(), asyncio.Event()
        worker = rt.worker() if with_worker else None
        sender = rt.alert_sender()
        app = create_app(
            WebhookConfig(
                secret=secret,
                dedupe_window=rt.policy.settings.dedupe_window,
                require_https=settings.connector_require_https,
            ),
            rt.store,
            rt.metrics,
            ready=lambda: _credentials_problem(rt, worker),
            policy=rt.policies,
            on_event=wake.set,
            keap_stats=lambda: (rt.client.stats.calls, rt.client.stats.retries),
            extra_routes=_redirect_routes(settings, rt.store),
        )
        server = _Server(
            uvicorn.Config(
                app,
                access_log=False,
                log_config=None,
                lifespan="off",
                timeout_graceful_shutdown=10,
            )
        )
        _stop_on_signals(stop)
        _reload_on_sighup(rt.policies)
        if announce is not None:
            host, port = sock.getsockname()[:2]
            announce(webhook_url(host, port))
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]), name="webhook"),
            asyncio.create_task(watch_policy(rt.policies, stop), name="policy"),
        ]
        # The sender runs with --no-worker too: a webhook-only replica still sees the backlog.
        tasks.append(asyncio.create_task(sender.run(stop), name="alerts"))
        if worker is not None:
            tasks.append(asyncio.create_task(worker.run(stop, wake), name="worker"))
        await _until_stopped(stop, server, tasks)


def _redirect_routes(settings: Settings, store: Store) -> list[BaseRoute]:
    """The OAuth2 redirect page at KEAP_REDIRECT_URI's path, for an OAuth2 app (issue 18)."""
    from connector.oauth_redirect import redirect_path, redirect_route, reserved

    uri = settings.keap_redirect_uri
    if settings.uses_api_key or not settings.keap_client_id or uri is None:
        return []
    if reserved(redirect_path(uri)):
        raise ConfigError(
            f"KEAP_REDIRECT_URI's path {redirect_path(uri)!r} is one the webhook answers",
            hint="use a path of its own, e.g. https://YOUR-HOST/oauth/callback",
        )
    return [redirect_route(settings, store)]


async def _until_stopped(
    stop: asyncio.Event, server: uvicorn.Server, tasks: list[asyncio.Task[None]]
) -> None:
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    for task in done:
        if task is not stopper and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _credentials_problem(rt: Runtime, worker: Worker | None = None) -> str | None:
    """What keeps Keap's credentials from being usable (DESIGN 6), in words with no secret."""
    if worker is not None and worker.credentials_refused:
        return "Keap refuses the stored credentials: run `connector auth login`"
    if isinstance(rt.credentials, ApiKeyAuth):
        return None
    token = await rt.store.load_token()
    return None if token is not None else "not logged in: run `connector auth login`"


async def work(settings: Settings, *, once: bool, dry_run: bool | None = None) -> DrainResult:
    async with runtime(settings) as rt:
        worker = rt.worker(dry_run=dry_run)
        sender = rt.alert_sender()
        if once:
            drained = await worker.drain()
            await sender.tick()  # what this run raised goes out before it exits
            return drained
        stop = asyncio.Event()
        _stop_on_signals(stop)
        _reload_on_sighup(rt.policies)
        watcher = asyncio.create_task(watch_policy(rt.policies, stop), name="policy")
        alerts = asyncio.create_task(sender.run(stop), name="alerts")
        await worker.run(stop)
        stop.set()
        await asyncio.gather(watcher, alerts)
        return DrainResult()


def webhook_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host  # noqa: S104
    return f"http://{shown}:{port}/keap/bounce/<bounce_type>?key=<CONNECTOR_WEBHOOK_SECRET>"
