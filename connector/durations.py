"""Durations and ``--since``: the one grammar every command and the policy file share.

Before this module the policy file, ``report --since`` and ``sync --since`` each read times their
own way, so ``report --since 7d`` worked and ``sync --since 7d`` did not (DESIGN.md section 5).
Now a duration is always a whole number and a unit (``45s``, ``90m``, ``12h``, ``7d``, ``4w``),
and ``--since`` is always either such a duration (that long before now) or an ISO-8601 date or
time (no zone means UTC; a date alone means its midnight UTC).

Every refusal is a :class:`~connector.errors.InputError` with a one-line message and a hint,
whatever the text: non-ASCII digits, numbers too large for a ``timedelta`` and dates at the
edge of the calendar included. :class:`DurationError` is also a ``ValueError``, so the policy
loader's validators (which pydantic expects to raise ``ValueError``) can use it unchanged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from connector.errors import InputError

MAX_DURATION = timedelta(days=3650)
_LIMIT_SECONDS = int(MAX_DURATION.total_seconds())
# Largest first: format_duration picks the largest unit that divides evenly.
UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_FORMS = "a whole number and a unit: s, m, h, d or w (e.g. '10m', '30d', '2w')"
SINCE_HINT = "e.g. 7d, 24h, 2w, 2024-05-01 or 2024-05-01T08:00:00+02:00"

# ASCII digits only (re.A): int() would accept other scripts' digits, a policy file should not.
_DURATION = re.compile(r"\s*([0-9]+)\s*([smhdw])\s*", re.A)
# Digits then letters: meant as a duration even when wrong ("7x", "0d"), so say what is wrong
# with it as a duration instead of calling it a bad date.
_DURATION_LIKE = re.compile(r"\s*[0-9]+\s*[A-Za-z]+\s*", re.A)
# Over the limit in any unit, and rejected before int() (which refuses ~4300+ digits anyway).
_MAX_DIGITS = 12


class DurationError(InputError, ValueError):
    """A duration or ``--since`` value that does not parse or is out of range."""


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse "45s", "10m", "12h", "30d" or "2w" (spaces around the parts allowed).

    At most :data:`MAX_DURATION`; zero only with ``allow_zero`` (a dedupe window may be off, a
    counting window may not). Raises :class:`DurationError` naming the accepted forms.
    """
    found = _DURATION.fullmatch(text)
    if found is None:
        raise DurationError(f"{text!r} is not a duration; use {DURATION_FORMS}")
    digits, unit = found.groups()
    digits = digits.lstrip("0") or "0"
    # Compared in whole seconds before a timedelta exists, which could overflow.
    if len(digits) > _MAX_DIGITS or int(digits) * UNIT_SECONDS[unit] > _LIMIT_SECONDS:
        raise DurationError(f"{text!r} is longer than the 3650-day limit")
    value = timedelta(seconds=int(digits) * UNIT_SECONDS[unit])
    if not value and not allow_zero:
        raise DurationError(f"{text!r} is empty: a window must be longer than zero")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest spelling :func:`parse_duration` reads back, so output reads like input.

    Whole seconds only (the grammar has no smaller unit); sub-second parts are dropped.
    """
    seconds = int(value.total_seconds())
    for unit, size in UNIT_SECONDS.items():
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` ("90m", "7d", "4w") or an ISO-8601 date/time.

    A date alone means its midnight and a time without an offset means UTC, so the same command
    gives the same period on every server. The result is timezone-aware, in UTC, and not after
    ``now`` (a naive ``now`` is taken as UTC). Raises :class:`DurationError` (an ``InputError``).
    """
    value = text.strip()
    if not value:
        raise DurationError("--since is empty", hint=f"give a duration or a date: {SINCE_HINT}")
    if not value.isascii():
        raise DurationError(
            f"--since {value!r} has non-ASCII characters; write digits as 0-9",
            hint=SINCE_HINT,
        )
    now = _utc(now)
    since = _duration_start(value, now) if _DURATION_LIKE.fullmatch(value) else _iso(value)
    if since > now:
        raise DurationError(f"--since {value} is in the future", hint="give a past date or time")
    return since


def _duration_start(value: str, now: datetime) -> datetime:
    try:
        return now - parse_duration(value)
    except DurationError as exc:
        raise DurationError(f"--since: {exc.message}", hint=SINCE_HINT) from None
    except OverflowError:
        raise DurationError(f"--since {value} reaches before the year 1", hint=SINCE_HINT) from None


def _iso(value: str) -> datetime:
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise DurationError(
            f"--since {value!r} is neither a duration nor an ISO date/time", hint=SINCE_HINT
        ) from None
    except OverflowError:
        raise DurationError(
            f"--since {value!r} is outside the calendar once converted to UTC", hint=SINCE_HINT
        ) from None


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC; a naive time is taken as UTC already."""
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
