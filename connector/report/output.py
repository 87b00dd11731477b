"""Which renderer a ``--format`` means, and writing the result to a file."""

from __future__ import annotations

import enum
from pathlib import Path

from connector.errors import InputError
from connector.report.build import Report


class ReportFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


def render_text(report: Report, fmt: ReportFormat) -> str:
    """The file formats; the table is for a terminal and is printed with rich instead."""
    if fmt is ReportFormat.CSV:
        from connector.report.render_csv import render_csv

        return render_csv(report)
    if fmt is ReportFormat.JSON:
        from connector.report.render_json import render_json

        return render_json(report)
    if fmt is ReportFormat.HTML:
        from connector.report.render_html import render_html

        return render_html(report)
    raise InputError(f"--format {fmt.value} prints to the terminal only")


def write_report(text: str, fmt: ReportFormat, output: Path) -> None:
    """CSV gets a byte-order mark so Excel reads it as UTF-8 rather than the local code page."""
    encoding = "utf-8-sig" if fmt is ReportFormat.CSV else "utf-8"
    try:
        output.write_text(text, encoding=encoding, newline="")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
