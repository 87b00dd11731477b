"""The report as a terminal table: every value is inert text, control characters visible."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from connector import report as rpt
from connector.bounces import BounceType
from tests.report.data import NOW, WEEK, Db, table_text


async def test_table_shows_each_contact(report: rpt.Report) -> None:
    text = table_text(report)
    assert "Hard Bounce x3" in text
    assert "blank_email (planned)" in text
    assert "9 bounce(s) from 6 contact(s)" in text


@pytest.mark.parametrize(
    "hostile",
    [
        "a@[/red]",
        "[/x]@example.com",
        "[link=https://evil.example]click[/link]@x.com",
        "[bold red]loud[/]@x.com",
    ],
)
async def test_markup_in_data_is_shown_as_typed(db: Db, hostile: str) -> None:
    event = await db.event(1, "42", hostile, BounceType.HARD_BOUNCE, hostile)
    await db.step(event, "42", f"tag_add:{hostile}")
    built = await rpt.build_report(db.store, WEEK, NOW)
    out = io.StringIO()
    console = Console(width=300, record=True, file=out, force_terminal=True)
    console.print(rpt.render_table(built))
    assert hostile in console.export_text()
    assert "\x1b]8;" not in out.getvalue(), "no terminal hyperlink"


async def test_control_characters_are_made_visible(db: Db) -> None:
    forged = "x@y.com\n2026-03-10 INFO forged\x1b[31m\u202e"
    event = await db.event(1, "43", forged, BounceType.HARD_BOUNCE)
    await db.step(event, "43", "tag_add:a\tb")
    built = await rpt.build_report(db.store, WEEK, NOW)
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(rpt.render_table(built))
    text = console.export_text()
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "x@y.com\\n2026-03-10 INFO forged\\x1b[31m\\u202e" in text
    assert "a\\tb" in text


def test_visible() -> None:
    assert rpt.visible("a\nb\x1b[0m\u202e\x00") == "a\\nb\\x1b[0m\\u202e\\x00"
    assert rpt.visible("plain ß 😀") == "plain ß 😀"
    assert rpt.visible("a\\nb") == "a\\\\nb", "a typed backslash cannot forge an escape"
