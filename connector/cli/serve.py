"""``connector serve`` and ``connector worker``: the long-running processes."""

from __future__ import annotations

import typer

from connector.cli.base import run_async, settings


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Only receive and store callbacks; run `connector worker` apart."
    ),
) -> None:
    """Receive Keap's "When an email bounces" HTTP Posts (and process them)."""
    from connector import service

    def announce(url: str) -> None:
        typer.echo(f"Keap HTTP Post URL: {url}", err=True)
        typer.echo("(behind HTTPS in production; the key is CONNECTOR_WEBHOOK_SECRET)", err=True)

    loaded = settings()
    run_async(service.serve(loaded, host, port, with_worker=not no_worker, announce=announce))


def worker(
    once: bool = typer.Option(False, "--once", help="Process what is due now, then exit."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Plan and record, write nothing to Keap."
    ),
) -> None:
    """Process queued events: read the contact, apply the policy, write back to Keap."""
    from connector import service

    result = run_async(service.work(settings(), once=once, dry_run=dry_run or None))
    if once:
        typer.echo(
            f"processed {result.processed}: {result.done} done, {result.failed} to retry, "
            f"{result.dead} dead, {result.released} waiting for login"
            + (f", {result.lost} taken over by another worker" if result.lost else "")
        )
