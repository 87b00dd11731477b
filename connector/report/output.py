"""Which renderer a ``--format`` means, writing the result to a file, and mailing it."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

from connector.errors import InputError
from connector.report.build import Report, period_text, summary_line

if TYPE_CHECKING:
    import ssl

    from connector.mail import MailServer


class ReportFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


def render_text(report: Report, fmt: ReportFormat, *, contact_url: str | None = None) -> str:
    """The file formats; the table is for a terminal and is printed with rich instead.
    ``contact_url`` (``CONNECTOR_CONTACT_URL``) links each contact of the HTML page."""
    if fmt is ReportFormat.CSV:
        from connector.report.render_csv import render_csv

        return render_csv(report)
    if fmt is ReportFormat.JSON:
        from connector.report.render_json import render_json

        return render_json(report)
    if fmt is ReportFormat.HTML:
        from connector.report.render_html import render_html

        return render_html(report, contact_url=contact_url)
    raise InputError(f"--format {fmt.value} prints to the terminal only")


def write_report(text: str, fmt: ReportFormat, output: Path) -> None:
    """CSV gets a byte-order mark so Excel reads it as UTF-8 rather than the local code page."""
    encoding = "utf-8-sig" if fmt is ReportFormat.CSV else "utf-8"
    try:
        output.write_text(text, encoding=encoding, newline="")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None


def email_report(
    report: Report,
    server: MailServer,
    recipients: list[str],
    *,
    contact_url: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """The HTML page as the body (a plain-text summary for clients that show no HTML) and the
    CSV attached, as ``--format csv`` writes it (with a byte-order mark for Excel)."""
    from connector import mail
    from connector.report.render_csv import render_csv
    from connector.report.render_html import render_html

    period = period_text(report)
    until = f"{report.until:%Y-%m-%d}"
    message = mail.compose(
        sender=server.sender,
        recipients=recipients,
        subject=f"Bounce report: {period}",
        text=f"Bounce report, {period}.\n{summary_line(report)}.\n\n"
        "The list is in the HTML part of this message and in the attached CSV.\n",
        html=render_html(report, contact_url=contact_url),
        attachments=[
            mail.Attachment(
                f"bounce-report-{until}.csv", render_csv(report).encode("utf-8-sig"), "text/csv"
            )
        ],
    )
    mail.send(server, message, ssl_context=ssl_context)
