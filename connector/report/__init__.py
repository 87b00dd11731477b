"""The bounce report: the weekly "fulfillment list" Keap users used to build by hand.

- ``build.py``: the data (rows, totals, daily counts) from the store; the one place that reads
  what audit steps mean (``_steps_summary``).
- ``render_csv.py``: the project's one CSV writer (formula-safe) and the report as CSV.
- ``render_json.py``: the documented JSON shape; ``render_table.py``: the terminal table;
  ``render_html.py`` + ``templates/report.html.j2``: the page for a person.
- ``output.py``: ``--format``, writing files, and mailing the page (``connector.mail``).

CSV and JSON carry every field, for scripts; the table and the page are for people.
"""

from connector.report.build import (
    DayCounts,
    Report,
    ReportRow,
    Totals,
    build_report,
    type_label,
)
from connector.report.output import ReportFormat, email_report, render_text, write_report
from connector.report.render_csv import (
    CsvWriter,
    csv_safe,
    csv_text,
    flat_columns,
    render_csv,
    write_csv,
)
from connector.report.render_html import render_html, type_color
from connector.report.render_json import REPORT_VERSION, render_json, report_dict
from connector.report.render_table import render_table, visible

__all__ = [
    "REPORT_VERSION",
    "CsvWriter",
    "DayCounts",
    "Report",
    "ReportFormat",
    "ReportRow",
    "Totals",
    "build_report",
    "csv_safe",
    "csv_text",
    "email_report",
    "flat_columns",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
    "render_text",
    "report_dict",
    "type_color",
    "type_label",
    "visible",
    "write_csv",
    "write_report",
]
