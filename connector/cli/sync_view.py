"""How ``connector sync`` looks on a terminal: the progress bar, the dry run's plan, the summary.

The core (:mod:`connector.sync`) never prints; it reports through a
:class:`~connector.sync.model.SyncProgress` and returns the dry run's rows in
``SyncSummary.plan``. This module turns those into output:

- :func:`command`: run a sync and show it as ``connector sync`` does (the command's body);
- :func:`render_dry_run`: the plan as a table, CSV or JSON on a stream;
- :func:`progress_bar`: a ``SyncProgress`` that draws a rich bar on a console;
- :func:`print_summary`: the closing lines (on stderr, so stdout stays clean for CSV/JSON).

Every cell from Keap is shown inert (:mod:`connector.cli.render`), and CSV goes through the one
CSV writer (:mod:`connector.report.render_csv`), which defuses formula-looking cells. Only
standard-library and ``connector.sync.model`` imports at module level: the command's module can
import this one without loading the store or the Keap client.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, TextIO

from connector.sync.model import (
    PLAN_COLUMNS,
    PlanRow,
    ProgressSnapshot,
    SyncOptions,
    SyncProgress,
    SyncSummary,
    exit_code,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from connector.config import Settings

__all__ = [
    "OutputFormat",
    "ProgressBar",
    "command",
    "print_summary",
    "progress_bar",
    "render_dry_run",
]


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def render_dry_run(rows: Sequence[PlanRow], fmt: OutputFormat, out: TextIO) -> None:
    """The dry run's plan on ``out``: a table, CSV (header first) or a JSON list of objects."""
    if fmt is OutputFormat.CSV:
        from connector.report.render_csv import CsvWriter

        writer = CsvWriter(out, PLAN_COLUMNS)
        writer.writeheader()
        writer.writerows(row.cells() for row in rows)
    elif fmt is OutputFormat.JSON:
        items = ",\n  ".join(json.dumps(row.as_dict()) for row in rows)
        out.write(f"[\n  {items}\n]\n" if rows else "[]\n")
    else:
        _print_table(rows, out)
    out.flush()


def _print_table(rows: Sequence[PlanRow], out: TextIO) -> None:
    from rich.console import Console

    from connector.cli.render import add_row, table

    shown = table(
        *(c.replace("_", " ") for c in PLAN_COLUMNS),
        title=f"sync plan (dry run): {len(rows)} address(es)",
    )
    for row in rows:
        add_row(shown, *row.cells())
    Console(file=out, width=None if out.isatty() else 200).print(shown)


class ProgressBar:
    """A :class:`SyncProgress` drawn as a rich bar: counts and call rate, no outside data."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar: Progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID = self._bar.add_task("sync", total=None, info="")

    def on_start(self, strategy: str, total: int | None) -> None:
        self._bar.update(self._task, total=total)
        self._bar.start()

    def on_progress(self, snapshot: ProgressSnapshot) -> None:
        self._bar.update(self._task, completed=snapshot.done, info=snapshot.describe())

    def on_finding(self, row: PlanRow) -> None:
        return None

    def on_done(self, snapshot: ProgressSnapshot) -> None:
        self.on_progress(snapshot)
        self._bar.stop()


def progress_bar(console: Console) -> SyncProgress:
    """A progress bar on ``console`` (use a stderr console: stdout may carry the plan)."""
    return ProgressBar(console)


def print_summary(summary: SyncSummary, err: TextIO) -> None:
    from connector.cli.render import visible

    for line in summary.lines():
        print(visible(line), file=err)


def command(
    settings: Settings,
    options: SyncOptions,
    fmt: OutputFormat | str = OutputFormat.TABLE,
    *,
    bar: bool | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``connector sync`` after its arguments are parsed: run, show the plan and the summary.

    ``bar``: a progress bar (None: when stderr is a terminal; otherwise the core logs a line
    every few seconds). The plan goes to ``out`` (stdout), the summary to ``err`` (stderr).
    ``fmt`` is an :class:`OutputFormat` or its value. Returns the exit code (130 when a
    signal stopped the scan).
    """
    import asyncio

    from connector.sync.run import run_sync

    out = out or sys.stdout
    err = err or sys.stderr
    progress = None
    if bar if bar is not None else err.isatty():
        from rich.console import Console

        progress = progress_bar(Console(file=err))
    summary = asyncio.run(run_sync(settings, options, progress=progress))
    if summary.plan is not None:
        render_dry_run(summary.plan, OutputFormat(fmt), out)
    print_summary(summary, err)
    return exit_code(summary)
