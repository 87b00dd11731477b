"""``connector.cli.render``: outside data is shown as inert, one-line text."""

from __future__ import annotations

import io
import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from connector.cli.render import add_row, inert, table, visible, visible_lines

HOSTILE = [
    "a@[/red]",
    "[link=https://evil.example]x[/link]@y.com",
    "x\x1b[31m@y.com\n2026-01-01 forged",
    "[bold]b[/bold]@c.d\r\t\x00\x7f\x85\u202eevil\u2066\u2028\ufeff",
]


def _unescape(text: str) -> str:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _printed(*cells: str) -> str:
    out = io.StringIO()
    rows = table("value")
    for cell in cells:
        add_row(rows, cell)
    Console(file=out, width=200, color_system=None).print(rows)
    return out.getvalue()


def test_visible_names_the_usual_controls() -> None:
    assert visible("x\x1b[31m@y.com\n2026") == "x\\x1b[31m@y.com\\n2026"
    assert visible("a\tb\rc") == "a\\tb\\rc"
    assert visible("\u202eabc") == "\\u202eabc"
    assert visible("back\\slash") == "back\\\\slash"
    assert visible("straße 東京 ✉") == "straße 東京 ✉"
    assert visible(42) == "42"


def test_visible_lines_keeps_our_own_line_breaks() -> None:
    assert visible_lines("one\x1b\ntwo") == "one\\x1b\ntwo"


def test_markup_in_a_cell_is_shown_as_written() -> None:
    printed = _printed(*HOSTILE)
    assert "a@[/red]" in printed
    assert "[link=https://evil.example]x[/link]@y.com" in printed
    assert "\x1b" not in printed
    assert not any(line.startswith("2026-01-01 forged") for line in printed.splitlines())
    assert "\\n2026-01-01 forged" in printed


def test_inert_is_never_markup() -> None:
    assert inert("[red]x[/red]").plain == "[red]x[/red]"
    assert inert("[red]x[/red]").spans == []


@given(st.text())
def test_any_text_is_one_visible_line_that_reads_back(text: str) -> None:
    shown = visible(text)
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"} for c in shown)
    assert _unescape(shown) == text
    shown.encode("utf-8")  # surrogates are escaped: it always encodes
    _printed(text)  # never raises
