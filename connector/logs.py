"""Logging: text or JSON lines, with email addresses masked and known secrets scrubbed.

Masking happens in a handler filter, so no caller can forget it: any ``user@domain`` in a message
becomes ``u***@domain``, and any registered secret (API key, tokens, webhook secret) becomes
``***``, even when it reaches a log line by accident (an exception text, a URL).

Outside data (an address, a name, a Keap error body) is inert in both formats: a text line shows
control characters as escapes (``connector.text.visible``), so a newline in an address cannot
start a forged line, and a traceback's lines are indented; a JSON line escapes every control,
format, separator and lone surrogate character, so it stays one parseable object.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from connector.text import visible

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_MIN_SECRET_LEN = 6


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``; keeps the domain, which ops need."""
    local, sep, domain = address.partition("@")
    if not sep:
        return "***" if address else ""
    return f"{local[:1]}***@{domain}"


def register_secret(value: str | None) -> None:
    """Scrub this value from every later log line (ignored when too short to be a secret)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def scrub(text: str) -> str:
    """Mask emails and registered secrets in free text."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = scrub(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update({k: _jsonable(v) for k, v in fields.items()})
        if record.exc_text:
            payload["error"] = record.exc_text
        return _json_inert(json.dumps(payload, ensure_ascii=False))


class _TextFormatter(logging.Formatter):
    """One line per record whatever the message holds; a traceback follows, indented."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = visible(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        blocks = [record.exc_text or "", self.formatStack(record.stack_info or "")]
        for block in filter(None, blocks):
            line += "".join(f"\n    {visible(part)}" for part in block.split("\n"))
        return line


def _json_inert(text: str) -> str:
    """JSON text with every character ``visible`` would escape written as a ``\\u`` escape.

    json.dumps(ensure_ascii=False) leaves DEL, C1, bidi overrides, zero-width characters, line
    separators and lone surrogates raw; the last cannot even be written as UTF-8.
    """
    if text.isprintable():
        return text
    return "".join(
        _json_escape(char) if char != "\\" and visible(char) != char else char for char in text
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def _jsonable(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return scrub(value) if isinstance(value, str) else value
    return scrub(str(value))


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Install the one stderr handler; safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ScrubFilter())
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "requests_oauthlib", "oauthlib", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
