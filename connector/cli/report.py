"""``connector report``: the bounce report, on the terminal, as a file, or by email."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from connector.cli.base import run_async, settings
from connector.cli.render import console, visible
from connector.errors import InputError

if TYPE_CHECKING:
    from connector.report import Report


class ReportChoice(enum.StrEnum):
    """The values of ``connector.report.ReportFormat``, known here without loading the report."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


def report(
    since: str = typer.Option(
        "7d",
        "--since",
        help="Start of the period: a duration back from now (7d, 24h, 2w) or an ISO date/time "
        "(UTC unless it has an offset).",
    ),
    fmt: ReportChoice = typer.Option(
        ReportChoice.TABLE, "--format", help="table (terminal), csv, json or html."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Write to this file instead of stdout (csv, json, html)."
    ),
    email: str | None = typer.Option(
        None,
        "--email",
        metavar="ADDR[,ADDR]",
        help="Send the report to these addresses over SMTP (CONNECTOR_SMTP_*): the HTML page as "
        "the body, the CSV attached.",
    ),
) -> None:
    """The bounce report: who bounced, how often, what was done, the tags now applied."""
    from datetime import UTC, datetime

    from connector.durations import parse_since

    now = datetime.now(UTC)
    start = parse_since(since, now)
    if fmt is ReportChoice.TABLE and output is not None:
        raise InputError("--format table prints to the terminal", hint="use csv, json or html")

    from connector import report as reporting
    from connector import service

    loaded = settings()
    service.register_secrets(loaded)
    contact_url = loaded.connector_contact_url
    if email is not None:
        from connector import mail

        server = mail.MailServer.from_settings(loaded)
        recipients = mail.parse_recipients(email)

    async def run() -> Report:
        async with service.opened_store(loaded) as store:
            return await reporting.build_report(store, start, now)

    built = run_async(run())
    if email is not None:
        reporting.email_report(built, server, recipients, contact_url=contact_url)
        sent_to = visible(", ".join(recipients))
        typer.echo(
            f"sent the report ({built.totals.contacts} contact(s)) to {sent_to}"
            f" via {visible(server.where)}",
            err=True,
        )
        if output is None:  # --email alone sends; with --output it also writes the file
            return
    if fmt is ReportChoice.TABLE:
        console().print(reporting.render_table(built))
        return
    chosen = reporting.ReportFormat(fmt.value)
    text = reporting.render_text(built, chosen, contact_url=contact_url)
    if output is None:
        typer.echo(text, nl=False)
        return
    reporting.write_report(text, chosen, output)
    typer.echo(f"wrote {visible(output)}: {built.totals.contacts} contact(s)", err=True)
