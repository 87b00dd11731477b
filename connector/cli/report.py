"""``connector report``: the bounce report, on the terminal or as a file."""

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

    async def run() -> Report:
        async with service.opened_store(loaded) as store:
            return await reporting.build_report(store, start, now)

    built = run_async(run())
    if fmt is ReportChoice.TABLE:
        console().print(reporting.render_table(built))
        return
    chosen = reporting.ReportFormat(fmt.value)
    text = reporting.render_text(built, chosen)
    if output is None:
        typer.echo(text, nl=False)
        return
    reporting.write_report(text, chosen, output)
    typer.echo(f"wrote {visible(output)}: {built.totals.contacts} contact(s)", err=True)
