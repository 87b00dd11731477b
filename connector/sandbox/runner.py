"""Starting the sandbox: in a background thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, TextIO

from connector.errors import InputError
from connector.sandbox import spec
from connector.sandbox.app import SandboxApp
from connector.sandbox.faults import FaultSettings
from connector.sandbox.oauth import AUTHORIZE_PATH, CALLBACK_PATH, TOKEN_PATH
from connector.sandbox.options import SandboxOptions
from connector.sandbox.server import SandboxHTTPServer
from connector.sandbox.state import SandboxState


@dataclass
class RunningSandbox:
    """A sandbox serving on a real socket; ``stop()`` (or ``with``) shuts it down."""

    app: SandboxApp
    server: SandboxHTTPServer
    thread: threading.Thread
    api_key: str
    client_secret: str
    startup_seconds: float
    _stopped: bool = field(default=False, repr=False)

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What KEAP_API_BASE_URL should be: v2 calls go to ``{base_url}/rest/v2/...``."""
        return f"{self.root_url}/crm"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}{TOKEN_PATH}"

    @property
    def authorize_url(self) -> str:
        return f"{self.root_url}{AUTHORIZE_PATH}"

    @property
    def redirect_uri(self) -> str:
        """A page on the sandbox that shows the code, for ``connector auth login --code``."""
        return f"{self.root_url}{CALLBACK_PATH}"

    @property
    def client_id(self) -> str:
        return self.app.auth.client_id

    @property
    def state(self) -> SandboxState:
        return self.app.state

    def stats(self) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def reset_stats(self) -> None:
        self.app.stats.reset()

    def set_faults(self, settings: FaultSettings | None = None, **changes: Any) -> FaultSettings:
        """Replace the faults with ``settings``, or change only the named fields."""
        if settings is not None:
            self.app.faults.apply(settings)
            return settings
        return self.app.faults.update(dict(changes))

    def clear_faults(self) -> None:
        self.app.faults.apply(FaultSettings())

    def mint_code(self, redirect_uri: str | None = None) -> str:
        """An authorization code as if a user had clicked Allow."""
        return self.app.auth.mint_code(self.client_id, redirect_uri or self.redirect_uri)

    def revoke_grant(self, *, keep_access_tokens: bool = False) -> int:
        return self.app.auth.revoke(keep_access_tokens=keep_access_tokens)

    def expire_access_tokens(self) -> int:
        return self.app.auth.expire_access_tokens()

    def env(self, *, oauth: bool = False) -> dict[str, str]:
        """Settings that point the connector at this sandbox (API key, or OAuth2 when asked)."""
        values = {
            "KEAP_API_BASE_URL": self.base_url,
            "KEAP_TOKEN_URL": self.token_url,
            "KEAP_AUTHORIZE_URL": self.authorize_url,
        }
        if oauth:
            values.update(
                KEAP_CLIENT_ID=self.client_id,
                KEAP_CLIENT_SECRET=self.client_secret,
                KEAP_REDIRECT_URI=self.redirect_uri,
            )
        else:
            values["KEAP_API_KEY"] = self.api_key
        return values

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_sandbox(options: SandboxOptions | None = None) -> RunningSandbox:
    """Seed, bind and serve in a daemon thread; returns once the socket accepts requests.

    Raises ``InputError`` for impossible options or a port already in use.
    """
    options = options or SandboxOptions()
    options.check()
    started = time.perf_counter()
    api_key = options.api_key or f"KeapAK-sandbox-{secrets.token_hex(16)}"
    client_secret = options.client_secret or secrets.token_urlsafe(24)
    if options.validate:
        spec.violations("GET", "/crm/rest/v2/oauth/connect/userinfo")  # loads the spec now
    app = SandboxApp(options, api_key, client_secret)
    try:
        server = SandboxHTTPServer((options.host, options.port), app)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}",
            hint="choose another --port",
        ) from exc
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="keap-sandbox"
    )
    thread.start()
    elapsed = time.perf_counter() - started
    return RunningSandbox(app, server, thread, api_key, client_secret, elapsed)


def describe(sandbox: RunningSandbox) -> str:
    """The start-up banner: where the sandbox is and the .env lines that point at it."""
    key_env = "\n".join(f"{k}={v}" for k, v in sandbox.env().items())
    oauth_env = "\n".join(f"{k}={v}" for k, v in sandbox.env(oauth=True).items())
    return (
        f"Keap sandbox listening on {sandbox.root_url} "
        f"({len(sandbox.state.contacts)} contacts, started in {sandbox.startup_seconds:.1f}s)\n"
        f"  base URL       {sandbox.base_url}\n"
        f"  API key        {sandbox.api_key}\n"
        f"  client id      {sandbox.client_id}\n"
        f"  client secret  {sandbox.client_secret}\n"
        f"  inspection     {sandbox.root_url}/_sandbox/state  /_sandbox/stats  /_sandbox/faults\n"
        f"\n# .env with an API key:\n{key_env}\n"
        f"\n# .env with OAuth2 (then: connector auth login):\n{oauth_env}\n"
    )


def run_sandbox(
    options: SandboxOptions, out: TextIO | None = None, stop: threading.Event | None = None
) -> None:
    """Serve in the foreground until Ctrl-C, SIGTERM or ``stop`` (``connector sandbox``)."""
    stream = out or sys.stdout
    sandbox = start_sandbox(options)
    stopping = stop or threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
    stream.write(describe(sandbox) + "\nPress Ctrl-C to stop.\n")
    stream.flush()
    try:
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
