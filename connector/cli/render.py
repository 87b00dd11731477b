"""Terminal output shared by every command: consoles, tables, inert text.

Everything that came from outside (Keap, a callback, a stored event or audit row, an error
message quoting either) reaches the terminal only through :func:`inert` or :func:`visible`
(the one ``connector.text.visible``, shared with the report table and the text log):

* ``visible`` makes every control, format and separator character readable as an escape
  (``\\x1b``, ``\\n``, ``\\u202e``), and doubles a backslash so the escapes cannot be forged;
  the result is one line that moves no cursor and changes no colour.
* ``inert`` wraps that in a ``rich.text.Text``, which rich never parses as markup, so
  ``[/red]`` or ``[link=...]`` in an address is shown as it is written.

Tables are built with :func:`table` and filled with :func:`add_row`, which passes every cell
through ``inert``: a caller cannot forget it.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from connector.text import visible, visible_lines

__all__ = ["add_row", "console", "inert", "print_table", "table", "visible", "visible_lines"]


def inert(value: object) -> Text:
    """``value`` as rich text that is never read as markup, control characters made visible."""
    return Text(visible(value))


def console() -> Console:
    """A terminal's own width; wide enough not to wrap cells when piped to a file or a test."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


def table(*columns: str, title: str | None = None) -> Table:
    """A table with these column headings (our own words, never outside data)."""
    built = Table(title=inert(title) if title is not None else None)
    for column in columns:
        built.add_column(inert(column))
    return built


def add_row(target: Table, *cells: object) -> None:
    """One row; every cell is shown as inert text, whatever it holds."""
    target.add_row(*(inert(cell) for cell in cells))


def print_table(target: Table) -> None:
    console().print(target)
