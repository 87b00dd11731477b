"""What every command module shares: the group class, the app factory, settings, the store.

Nothing here imports the core beyond settings and errors: each command imports what it uses,
inside its own function, so ``connector --help`` stays quick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from typer.core import TyperGroup

from connector.cli.render import visible
from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.store import Store

T = TypeVar("T")


def error_line(message: str) -> str:
    """An error as one inert line: secrets scrubbed, control characters made visible."""
    from connector.logs import scrub

    return f"error: {visible(scrub(message))}"


class ErrorGroup(TyperGroup):
    """Turns the connector's own errors into one stderr line instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click; its Context is private
        try:
            return super().invoke(ctx)
        except ConnectorError as exc:
            typer.echo(error_line(str(exc)), err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


def typer_app(help_text: str) -> typer.Typer:
    """A command group that reports errors as one line and shows its help when called bare."""
    return typer.Typer(
        cls=ErrorGroup,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


def settings() -> Settings:
    """Settings for a command; a bad variable stops the command with one clear line."""
    from connector.config import load_settings
    from connector.logs import configure

    loaded = load_settings()
    configure(loaded.connector_log_format)
    return loaded


def warn_unknown_settings() -> None:
    """DESIGN.md 4: every command warns of a ``KEAP_*``/``CONNECTOR_*`` name no setting reads
    (one line each, on stderr; the name only, never the value). ``doctor`` fails on them."""
    from connector.config import ENV_FILE, unknown_variables

    for unknown in unknown_variables():
        where = f" (in {ENV_FILE})" if unknown.source == ENV_FILE else ""
        typer.echo(f"warning: {visible(unknown.describe())}{where}", err=True)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, with asyncio imported only by a command that runs something."""
    import asyncio

    return asyncio.run(coroutine)


def with_store(fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``fn`` against the configured store, opened and closed around it."""
    from connector import service

    loaded = settings()

    async def run() -> T:
        async with service.opened_store(loaded) as store:
            return await fn(store)

    return run_async(run())
