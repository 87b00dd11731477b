"""Issue 13 item 1: outside data reaching the text log is inert; the JSON log stays one object.

A Keap address with a newline and a timestamp in it once produced a second, forged log line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging

from connector import logs

FORGED = "x@y.com\n12:00:00 INFO    connector.worker: event 9 done\x1b[2J\u202e\x9b31m"


def _emit(log_format: str, message: str, *args: object, exc: BaseException | None = None) -> str:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        with contextlib.redirect_stderr(out):
            logs.configure(log_format)
        logger = logging.getLogger("connector.test")
        if exc is None:
            logger.warning(message, *args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception(message, *args)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    return out.getvalue()


def test_item1_a_newline_in_an_address_cannot_forge_a_text_log_line() -> None:
    text = _emit("text", "bounce for %s", FORGED)
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert not {"\x1b", "\u202e", "\x9b"} & set(text)
    assert "\\n12:00:00 INFO" in lines[0]
    assert "\\x1b[2J\\u202e\\x9b31m" in lines[0]


def test_item1_an_exception_quoting_outside_data_forges_no_line_either() -> None:
    text = _emit("text", "event failed: %s", FORGED, exc=ValueError(FORGED))
    lines = text.splitlines()
    assert lines[0].count("INFO") == 1, "the forged line stays inside the first"
    assert all(line.startswith(" ") for line in lines[1:]), "a traceback line starts indented"
    assert not {"\x1b", "\u202e"} & set(text)


def test_item1_the_json_log_is_one_object_with_the_text_intact() -> None:
    text = _emit("json", "bounce for %s", FORGED + "\ud800")
    assert len(text.splitlines()) == 1
    assert not {"\x1b", "\u202e", "\x9b"} & set(text)
    record = json.loads(text)
    assert record["message"].startswith("bounce for x***@y.com\n12:00:00 INFO")
    assert "\u202e\x9b31m\ud800" in record["message"]
