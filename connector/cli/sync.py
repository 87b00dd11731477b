"""``connector sync``: the backfill's options; ``sync_view`` shows the run."""

from __future__ import annotations

import typer

from connector.cli.base import settings
from connector.cli.sync_view import OutputFormat  # standard library only: cheap for --help
from connector.sync.model import Strategy  # standard library only: cheap for --help


def sync(
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="ISO-TIME",
        help="Only contacts updated at or after this time (ISO-8601; UTC when it has no zone).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write nothing to Keap or the store; print the plan."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Stop after queueing N remediations; the next run resumes."
    ),
    restart: bool = typer.Option(
        False, "--restart", help="Ignore the checkpoint of an interrupted run; scan from the start."
    ),
    strategy: Strategy = typer.Option(
        Strategy.AUTO,
        "--strategy",
        help="contacts: page through every contact; addresses: list the bounced addresses and "
        "look each one up; auto: whichever costs fewer Keap calls.",
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.TABLE, "--format", help="How --dry-run prints the plan."
    ),
) -> None:
    """Backfill: find addresses Keap already marks as bounced and remediate them (resumable)."""
    from datetime import UTC, datetime

    from connector.cli import sync_view
    from connector.durations import parse_since
    from connector.sync.model import SyncOptions

    options = SyncOptions(
        since=None if since is None else parse_since(since, datetime.now(UTC)),
        dry_run=dry_run,
        limit=limit,
        restart=restart,
        strategy=strategy,
    )
    code = sync_view.command(settings(), options, output_format)
    if code:
        raise typer.Exit(code)
