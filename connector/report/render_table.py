"""The report as a terminal table (rich).

Outside data (addresses, tags, outcomes, contact ids) reaches rich only inside ``Text`` objects,
which rich never parses as markup, and with control characters made visible first (``\\x1b``,
``\\n``, bidi overrides), so a contact's data can neither restyle the terminal, forge a line,
nor crash the table with a markup error.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from connector.report.build import (
    Group,
    Report,
    ReportRow,
    bounce_history,
    done_lines,
    left_to_do,
    period_text,
    row_group,
    summary_line,
)
from connector.text import visible

__all__ = ["render_table", "visible"]


def _lines(values: list[str]) -> Text:
    """One value per line; each value's own newlines shown as ``\\n``."""
    return Text("\n".join(visible(v) for v in values))


def _contact_lines(row: ReportRow) -> list[str]:
    address = row.address or (row.emails[0] if row.emails else "")
    others = [e for e in row.emails if e.lower() != address.lower()]
    head = " ".join(
        part for part in (row.name, f"#{row.contact_id}" if row.contact_id else "") if part
    )
    return [head or "(no contact found)", *([address] if address else []), *others]


def _did_lines(row: ReportRow, report: Report) -> list[str]:
    tags = [f"Tag: {tag}" for tag in row.tags]
    tags += [f"Tag: {tag} (planned)" for tag in row.planned_tags]
    return done_lines(row, report.until) + tags or ["Nothing yet"]


def render_table(report: Report) -> Table:
    """The page for a person, in a terminal: contacts grouped by what they need, the same
    words as the HTML page. Cells are ``Text``, never markup."""
    title = f"Bounce report: {period_text(report)}"
    caption = "\n".join([summary_line(report), *(i.text() for i in report.incidents)])
    table = Table(title=Text(title), caption=Text(visible(caption)), show_lines=True)
    for column in ("contact", "bounces", "what the connector did", "status", "left to do"):
        table.add_column(column)
    grouped: dict[Group, list[ReportRow]] = {group: [] for group in Group}
    for row in report.rows:
        grouped[row_group(row)].append(row)
    for group, rows in grouped.items():
        if not report.rows:
            break
        table.add_row(Text(f"{group.value.capitalize()} ({len(rows)})", style="bold"))
        for row in rows:
            status = [row.status, *([row.outcome] if row.outcome not in (None, row.status) else [])]
            table.add_row(
                _lines(_contact_lines(row)),
                _lines(bounce_history(row, report.until)),
                _lines(_did_lines(row, report)),
                _lines([s for s in status if s]),
                _lines([left_to_do(row)]),
            )
    return table
