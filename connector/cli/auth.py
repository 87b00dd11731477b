"""``connector auth``: OAuth2 sign-in and token state (never shows a token)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from connector.cli.base import run_async, settings, typer_app
from connector.cli.render import visible

if TYPE_CHECKING:
    from connector.keap.auth import AuthStatus

app = typer_app("OAuth2 sign-in and token state (never shows a token).")


@app.command("login")
def auth_login(
    code: str | None = typer.Option(
        None,
        "--code",
        help="The code (or the whole redirect URL) Keap sent for a login started here; "
        "skips the prompt.",
    ),
    print_url: bool = typer.Option(
        False,
        "--print-url",
        help="Start a login and only print the URL to open; finish it with --code.",
    ),
) -> None:
    """Authorize the connector with Keap (OAuth2 authorization-code flow)."""
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
            if code is None:
                url = await auth.begin_login(loaded, store)
                typer.echo(f"Open this URL, sign in and allow access:\n\n  {visible(url)}\n")
                answer = typer.prompt("Paste the URL Keap redirected you to (or just the code)")
            else:
                answer = code
            return await auth.complete_login(loaded, store, answer)

    typer.echo(f"logged in: {visible(run_async(run()).summary)}")


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
