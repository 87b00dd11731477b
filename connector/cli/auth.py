"""``connector auth``: OAuth2 sign-in and token state (never shows a token)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from connector.cli.base import run_async, settings, typer_app
from connector.cli.render import visible

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.keap.auth import AuthStatus
    from connector.store import Store

app = typer_app("OAuth2 sign-in and token state (never shows a token).")


LOGIN_WAIT_SECONDS = 600


@app.command("login")
def auth_login(
    code: str | None = typer.Option(
        None,
        "--code",
        help="The code (or the whole redirect URL) Keap sent for a login started here; "
        "finishes it without waiting.",
    ),
    print_url: bool = typer.Option(
        False,
        "--print-url",
        help="Start a login and only print the URL to open; finish it with --code (or let "
        "`connector serve` answer the redirect).",
    ),
    wait: float = typer.Option(
        LOGIN_WAIT_SECONDS,
        "--wait",
        min=1,
        help="Seconds to wait for Keap to send the browser back to KEAP_REDIRECT_URI.",
    ),
) -> None:
    """Authorize the connector with Keap (OAuth2 authorization-code flow).

    Prints the URL to open, then waits until Keap sends the browser back to KEAP_REDIRECT_URI,
    which `connector serve` answers: no copy and paste. In a terminal, pasting the redirect URL
    (or its code) works too. Ctrl-C stops waiting.
    """
    from connector import service
    from connector.keap import auth

    loaded = settings()
    service.register_secrets(loaded)

    if print_url:

        async def start() -> str:
            async with service.opened_store(loaded) as store:
                return await auth.begin_login(loaded, store)

        typer.echo(visible(run_async(start())))
        return

    async def run() -> AuthStatus:
        async with service.opened_store(loaded) as store:
            if code is not None:
                return await auth.complete_login(loaded, store, code, outcomes=store)
            url, state = await auth.start_login(loaded, store)
            typer.echo(f"Open this URL, sign in and allow access:\n\n  {visible(url)}\n")
            typer.echo(
                "Waiting for Keap to send your browser back to "
                f"{visible(loaded.keap_redirect_uri or '')} (answered by `connector serve`)"
                + ("; or paste the URL Keap redirected you to here." if _interactive() else ".")
            )
            return await _wait_or_paste(loaded, store, state, wait)

    typer.echo(f"logged in: {visible(run_async(run()).summary)}")


def _interactive() -> bool:
    import sys

    return sys.stdin.isatty()


async def _wait_or_paste(
    loaded: Settings, store: Store, state: str, wait_seconds: float
) -> AuthStatus:
    """The redirect page's outcome, or a URL pasted into the terminal, whichever comes first.

    stdin is read by a daemon thread, so a login finished in the browser never waits for it.
    """
    import asyncio
    import sys
    import threading

    from connector.keap import auth

    waiting = asyncio.create_task(
        auth.wait_for_login(store, store, state, wait_seconds=wait_seconds)
    )
    if not _interactive():
        return await waiting
    loop = asyncio.get_running_loop()
    pasted: asyncio.Future[str] = loop.create_future()

    def answer(line: str) -> None:
        if not pasted.done():
            pasted.set_result(line)

    def read() -> None:
        line = sys.stdin.readline()
        if line.strip():
            loop.call_soon_threadsafe(answer, line)

    threading.Thread(target=read, name="paste", daemon=True).start()
    either: list[asyncio.Future[Any]] = [waiting, pasted]
    done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if waiting in done:
        pasted.cancel()
        return waiting.result()
    waiting.cancel()
    return await auth.complete_login(loaded, store, pasted.result(), outcomes=store)


@app.command("status")
def auth_status() -> None:
    """Show the credential mode, token expiry and the refresh token's age."""
    from connector import service
    from connector.keap import auth

    loaded = settings()

    async def run() -> AuthStatus:
        if loaded.uses_api_key:
            return await auth.auth_status(loaded, None)
        async with service.opened_store(loaded) as store:
            return await auth.auth_status(loaded, store)

    status = run_async(run())
    typer.echo(visible(status.summary))
    if status.scope:
        typer.echo(f"scope: {visible(status.scope)}")
    if status.refresh_line:
        typer.echo(visible(status.refresh_line))
    if not status.logged_in or status.expired:
        raise typer.Exit(1)


@app.command("refresh")
def auth_refresh() -> None:
    """Refresh the OAuth2 access token now (the refresh token rotates)."""
    from connector import service
    from connector.keap import auth

    loaded = settings()
    service.register_secrets(loaded)

    async def run() -> AuthStatus:
        async with service.opened_store(loaded) as store:
            return await auth.refresh_now(loaded, store)

    typer.echo(f"refreshed: {visible(run_async(run()).summary)}")


@app.command("logout")
def auth_logout() -> None:
    """Forget the stored OAuth2 tokens."""
    from connector import service
    from connector.keap import auth

    loaded = settings()

    async def run() -> None:
        async with service.opened_store(loaded) as store:
            await auth.logout(store)

    run_async(run())
    typer.echo("logged out: stored tokens removed")
