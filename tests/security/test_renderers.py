"""Issue 13 "Must show": arbitrary outside text through every renderer never raises and reads
back as itself or its escaped form (markup, ANSI escapes, newlines, surrogates, formulas)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
import unicodedata
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape
from rich.console import Console

from connector import logs
from connector.cli.render import add_row, table
from connector.report.render_csv import csv_safe, csv_text
from connector.report.render_html import _clean
from connector.text import plain, visible

NASTY = st.sampled_from(
    ["[/red]", "[link=https://evil.example]x[/link]", "\x1b[31m", "\n", "\r\n", "\u202e",
     "\ud800", "=HYPERLINK(1)", "-2+3", "@x", "\\n", "\x00", "\x9b", "<b>&amp;</b>", "\u2028"]
)  # fmt: skip
TEXT = st.lists(st.one_of(NASTY, st.text()), max_size=6).map("".join)
_ESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")
_NAMED = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def unescape(shown: str) -> str:
    return _ESCAPE.sub(lambda m: _NAMED.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), shown)


def log_line(log_format: str, text: str) -> str:
    out, root = io.StringIO(), logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        with contextlib.redirect_stderr(out):
            logs.configure(log_format)
        logging.getLogger("connector.prop").warning("%s", text)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    return out.getvalue()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_every_renderer_reads_back_and_never_raises(text: str) -> None:
    shown = visible(text)
    assert "\n" not in shown
    assert unescape(shown) == text

    cells = table("value")
    add_row(cells, text)
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None, legacy_windows=False)
    console.print(cells)
    assert shown in out.getvalue() or len(shown) > 300

    line = log_line("text", text)
    assert line.count("\n") == 1
    assert unescape(line.rstrip("\n").split(": ", 1)[1]) == logs.scrub(text)
    record = json.loads(log_line("json", text))
    assert record["message"] == logs.scrub(text)

    [[cell]] = list(csv.reader(io.StringIO(csv_text(["v"], [[text]]), newline="")))[1:]
    assert cell == csv_safe(text)
    assert cell in (text, "'" + text), "the text itself, or its formula-escaped form"

    parser = _Text()
    parser.feed(str(escape(_clean(text))))
    parser.close()
    assert "".join(parser.parts) == _clean(text)

    note = plain(text)
    assert not {unicodedata.category(c) for c in note} & {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert plain(note) == note
