"""The project's one CSV writer, and the report as CSV.

Every CSV the connector writes (``report --format csv``, ``sync --dry-run --format csv``, ...)
goes through :class:`CsvWriter`, so every cell is guarded the same way: a spreadsheet runs a
cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (also after leading spaces,
which Excel and LibreOffice skip), and a leading tab or carriage return is how the OWASP list
smuggles one past a naive check. Such a cell gets a leading apostrophe, which spreadsheets show
as text and hide. Everything else is written as is (RFC 4180 quoting by the ``csv`` module).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

from connector.report.build import Report, ReportRow, iso, row_incident, type_label

_FORMULA_STARTS = ("=", "+", "-", "@")
_RAW_STARTS = ("\t", "\r")

Cell = str | int | float | None
CsvRow = Sequence[Cell] | Mapping[str, Cell]


def csv_safe(value: Cell) -> str:
    """One cell as text a spreadsheet shows rather than runs; ``None`` is an empty cell."""
    text = "" if value is None else str(value)
    if text.startswith(_RAW_STARTS) or text.lstrip().startswith(_FORMULA_STARTS):
        return "'" + text
    return text


class CsvWriter:
    """A ``csv.DictWriter``-like writer whose every cell goes through :func:`csv_safe`.

    Rows are sequences in column order or mappings by column name (a missing name is an
    empty cell, an unknown one is an error, like ``DictWriter``).
    """

    def __init__(self, out: TextIO, fieldnames: Sequence[str]) -> None:
        self._columns = list(fieldnames)
        self._writer = csv.writer(out)

    def writeheader(self) -> None:
        self._writer.writerow([csv_safe(c) for c in self._columns])

    def writerow(self, row: CsvRow) -> None:
        if isinstance(row, Mapping):
            unknown = set(row) - set(self._columns)
            if unknown:
                raise ValueError(f"unknown CSV column(s): {', '.join(sorted(unknown))}")
            cells: Sequence[Cell] = [row.get(c) for c in self._columns]
        else:
            cells = row
        self._writer.writerow([csv_safe(cell) for cell in cells])

    def writerows(self, rows: Iterable[CsvRow]) -> None:
        for row in rows:
            self.writerow(row)


def write_csv(header: Sequence[str], rows: Iterable[CsvRow], out: TextIO) -> None:
    """A header row and the rows, to ``out`` (open it with ``newline=""``)."""
    writer = CsvWriter(out, header)
    writer.writeheader()
    writer.writerows(rows)


def csv_text(header: Sequence[str], rows: Iterable[CsvRow]) -> str:
    """:func:`write_csv` into a string (CRLF line ends, as RFC 4180 says)."""
    out = io.StringIO(newline="")
    write_csv(header, rows, out)
    return out.getvalue()


# --- the report ------------------------------------------------------------------------------


def flat_columns(report: Report) -> list[str]:
    """Column headings: fixed fields around one count column per bounce type present."""
    types = [type_label(t) for t in report.bounce_types]
    head = ["contact_id", "emails", "total"]
    tail = ["first_bounce_at", "last_bounce_at", "status", "outcome", "action", "action_at"]
    extra = ["planned_action", "tags", "planned_tags", "action_outcome", "name", "address"]
    return [*head, *types, *tail, *extra, "incident"]


def flat_row(report: Report, row: ReportRow) -> list[str]:
    """Every field of the row, one cell each, in :func:`flat_columns` order."""
    counts = [str(row.bounces.get(t, 0)) for t in report.bounce_types]
    return [
        row.contact_id or "",
        "; ".join(row.emails),
        str(row.total),
        *counts,
        iso(row.first_bounce_at) or "",
        iso(row.last_bounce_at) or "",
        row.status,
        row.outcome or "",
        row.action,
        iso(row.action_at) or "",
        row.planned_action or "",
        "; ".join(row.tags),
        "; ".join(row.planned_tags),
        row.action_outcome,
        row.name or "",
        row.address or "",
        row_incident(report, row) or "",
    ]


def render_csv(report: Report) -> str:
    """A header row and one row per contact (RFC 4180, CRLF line ends)."""
    return csv_text(flat_columns(report), (flat_row(report, row) for row in report.rows))
