"""The report as a terminal table (rich).

Outside data (addresses, tags, outcomes, contact ids) reaches rich only inside ``Text`` objects,
which rich never parses as markup, and with control characters made visible first (``\\x1b``,
``\\n``, bidi overrides), so a contact's data can neither restyle the terminal, forge a line,
nor crash the table with a markup error.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from connector.report.build import Report, ReportRow, summary_line, type_label, type_order, when
from connector.text import visible

__all__ = ["render_table", "visible"]


def _lines(values: list[str]) -> Text:
    """One value per line; each value's own newlines shown as ``\\n``."""
    return Text("\n".join(visible(v) for v in values))


def _bounce_lines(row: ReportRow) -> list[str]:
    ordered = sorted(row.bounces.items(), key=lambda item: type_order(item[0]))
    return [f"{type_label(t)} x{n}" for t, n in ordered]


def _action_lines(row: ReportRow) -> list[str]:
    parts = [row.action_outcome if row.action == "none" else f"{row.action} {when(row.action_at)}"]
    if row.planned_action:
        parts.append(f"{row.planned_action} (planned)")
    return parts


def _tag_lines(row: ReportRow) -> list[str]:
    return [*row.tags, *(f"{tag} (planned)" for tag in row.planned_tags)]


def render_table(report: Report) -> Table:
    """Cells are ``Text``, never markup, so a contact's data cannot restyle the terminal."""
    title = f"Bounce report {when(report.since)} to {when(report.until)} UTC"
    table = Table(title=Text(title), caption=Text(visible(summary_line(report))), show_lines=True)
    for column in ("contact", "email", "bounces", "last bounce", "status", "action", "tags"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(
            _lines([row.contact_id or "-"]),
            _lines(row.emails),
            _lines(_bounce_lines(row)),
            _lines([when(row.last_bounce_at)]),
            _lines([row.status]),
            _lines(_action_lines(row)),
            _lines(_tag_lines(row)),
        )
    return table
