"""Outside text made harmless: shown inert (``visible``) or written plain (``plain``).

Everything that came from outside (Keap, a callback, a stored event or audit row, an error
message quoting either) is shown on a terminal, in a table or in a text log line only through
:func:`visible`, and is placed in text we write to Keap (notes, tasks) only through
:func:`plain`. One module, so every renderer hides the same characters:

* ``visible`` makes every control, format and separator character readable as an escape
  (``\\x1b``, ``\\n``, ``\\u202e``) and doubles a backslash so the escapes cannot be forged; the
  result is one line that moves no cursor, changes no colour and cannot start a new log line.
* ``plain`` drops those characters instead (a note in Keap is read by people, not parsed), a
  whitespace control becoming one space, so a name like ``"Ada\\x1b[31m\\u202e"`` is written
  ``"Ada[31m"``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["plain", "plain_lines", "visible", "visible_lines"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Control (C0, DEL, C1), format (bidi overrides and isolates, zero-width, soft hyphen),
# surrogate, line and paragraph separators, unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})
# What ``plain`` drops: the same, except unassigned code points (a newer Unicode's letters).
_STRIPPED_CATEGORIES = _HIDDEN_CATEGORIES - {"Cn"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: object) -> str:
    """``value`` as one line of plain text: control characters shown as escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to escape
    return "".join(
        _escape(char)
        if char in _NAMED or unicodedata.category(char) in _HIDDEN_CATEGORIES
        else char
        for char in text
    )


def visible_lines(text: str) -> str:
    """Our own multi-line text (a summary, a report) with each line made ``visible``."""
    return "\n".join(visible(line) for line in text.split("\n"))


def plain(value: object) -> str:
    """``value`` as one line with no control, format or separator character left in it."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(
        (" " if char.isspace() else "")
        if unicodedata.category(char) in _STRIPPED_CATEGORIES
        else char
        for char in text
    )


def plain_lines(text: str) -> str:
    """Our own multi-line text (a note) with each line made ``plain``; only ``\\n`` breaks."""
    return "\n".join(plain(line) for line in text.split("\n"))
