"""Logging: text or JSON lines, with email addresses masked and known secrets scrubbed.

Masking happens in a handler filter, so no caller can forget it: any ``user@domain`` in a message
becomes ``u***@domain``, and any registered secret (API key, tokens, webhook secret) becomes
``***``, even when it reaches a log line by accident (an exception text, a URL).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

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
        return json.dumps(payload, ensure_ascii=False)


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
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "requests_oauthlib", "oauthlib", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
