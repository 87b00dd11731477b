"""``connector db``: apply and show the store's migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from connector.cli.base import run_async, settings, typer_app
from connector.cli.render import visible

if TYPE_CHECKING:
    from connector.store import MigrationState

app = typer_app("The durable store's schema.")


@app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations (SQLite and PostgreSQL)."""
    from connector import service

    loaded = settings()

    async def run() -> list[str]:
        async with service.opened_store(loaded, check=False) as store:
            return await store.migrate()

    applied = run_async(run())
    typer.echo(
        f"applied {len(applied)} migration(s): {visible(', '.join(applied))}"
        if applied
        else "up to date"
    )


@app.command("status")
def db_status() -> None:
    """Show each migration and when it was applied."""
    from connector import service

    loaded = settings()

    async def run() -> list[MigrationState]:
        async with service.opened_store(loaded, check=False) as store:
            return await store.migration_status()

    states = run_async(run())
    pending = 0
    for state in states:
        when = f"applied {state.applied_at:%Y-%m-%d %H:%M:%S}" if state.applied_at else "pending"
        pending += state.applied_at is None
        typer.echo(f"{visible(state.name)}: {when}")
    if pending:
        typer.echo(f"{pending} pending: run `connector db migrate`", err=True)
        raise typer.Exit(1)
