"""``connector/cli/sync_view.py``: the dry run's plan as CSV, JSON and a table, shown inert."""

from __future__ import annotations

import csv
import io
import json

import pytest

from connector.cli.sync_view import OutputFormat, render_dry_run
from connector.sync import PLAN_COLUMNS, PlanRow

HOSTILE = [
    '=HYPERLINK("https://evil.example","x")@evil.com',
    "-2+3@x.com",
    "+1@x.com",
    "@SUM(A1)@x.com",
    "\t=1@x.com",
    "\r=1@x.com",
]


def _row(address: str, contact: str = "7") -> PlanRow:
    return PlanRow(contact, address, "EMAIL1", "HARD_BOUNCE", "hard_bounce", "1", "none", "+T")


@pytest.mark.parametrize("address", HOSTILE)
def test_dry_run_csv_defuses_formula_cells(address: str) -> None:
    """Issue 13, item 2: a cell a spreadsheet would run gets a leading apostrophe."""
    out = io.StringIO(newline="")
    render_dry_run([_row(address)], OutputFormat.CSV, out)

    header, row = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert header == list(PLAN_COLUMNS)
    assert row[1] == "'" + address
    assert row[0] == "7"


def test_dry_run_csv_keeps_plain_cells_as_they_are() -> None:
    out = io.StringIO(newline="")
    render_dry_run([_row("ada@example.com")], OutputFormat.CSV, out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    plain = ["7", "ada@example.com", "EMAIL1", "HARD_BOUNCE", "hard_bounce", "1", "none"]
    assert rows[1][:7] == plain
    assert rows[1][7] == "'+T", "a tag list starts with + and is guarded like any cell"


def test_dry_run_json_round_trips_every_row() -> None:
    rows = [_row(a, str(i)) for i, a in enumerate(HOSTILE)]
    out = io.StringIO()
    render_dry_run(rows, OutputFormat.JSON, out)
    assert json.loads(out.getvalue()) == [r.as_dict() for r in rows]
    empty = io.StringIO()
    render_dry_run([], OutputFormat.JSON, empty)
    assert json.loads(empty.getvalue()) == []


def test_dry_run_table_shows_markup_and_control_characters_as_text() -> None:
    """Issue 13, item 1: ``[/x]`` and a newline in an address neither crash nor format."""
    out = io.StringIO()
    render_dry_run([_row("[/x]@example.com"), _row("a\nforged@x.com")], OutputFormat.TABLE, out)
    text = out.getvalue()
    assert "[/x]@example.com" in text
    assert "a\\nforged@x.com" in text
    assert "2 address(es)" in text
