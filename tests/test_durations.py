"""connector.durations: the one duration and ``--since`` grammar (DESIGN.md sections 5 and 7)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connector.durations import (
    MAX_DURATION,
    UNIT_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
    parse_since,
)
from connector.errors import InputError

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("10m", timedelta(minutes=10)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 3 d ", timedelta(days=3)),
        ("007d", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "d",
        "10x",
        "1.5d",
        "-1d",
        "10M",
        "1y",
        "99999w",
        "99999999999999999999d",
        "9" * 5000 + "s",
        "\u0667d",  # ARABIC-INDIC DIGIT SEVEN
        "\uff17d",  # FULLWIDTH DIGIT SEVEN
        "\u00b2d",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no
        "7\u00a0d",  # a no-break space is not ASCII whitespace
    ],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|limit"):
        parse_duration(text)
    with pytest.raises(InputError):
        parse_duration(text)


def test_zero_duration_only_where_allowed() -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration("0d")
    assert parse_duration("0s", allow_zero=True) == timedelta(0)


def test_the_limit_is_inclusive() -> None:
    assert parse_duration("3650d") == MAX_DURATION
    with pytest.raises(DurationError, match="3650-day limit"):
        parse_duration("3651d")


@pytest.mark.parametrize(("text", "shown"), [("30d", "30d"), ("2w", "2w"), ("90m", "90m")])
def test_format_duration_reads_like_the_file(text: str, shown: str) -> None:
    assert format_duration(parse_duration(text)) == shown


WHOLE_SECONDS = st.integers(1, int(MAX_DURATION.total_seconds())).map(
    lambda s: timedelta(seconds=s)
)
SPELLED = st.tuples(st.integers(0, 9_999_999), st.sampled_from("smhdw"))


@given(WHOLE_SECONDS)
def test_format_then_parse_round_trips(value: timedelta) -> None:
    text = format_duration(value)
    assert parse_duration(text) == value
    assert format_duration(parse_duration(text)) == text


@given(SPELLED)
def test_parse_then_format_keeps_the_value(spelled: tuple[int, str]) -> None:
    number, unit = spelled
    text = f"{number}{unit}"
    if number * UNIT_SECONDS[unit] > MAX_DURATION.total_seconds():
        with pytest.raises(DurationError, match="3650-day limit"):
            parse_duration(text)
        return
    value = parse_duration(text, allow_zero=True)
    assert value == timedelta(seconds=number * UNIT_SECONDS[unit])
    assert parse_duration(format_duration(value), allow_zero=True) == value


# --- --since -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the forms report --since took
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        (" 2w ", NOW - timedelta(weeks=2)),
        ("90m", NOW - timedelta(minutes=90)),
        ("4w", NOW - timedelta(weeks=4)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T08:30", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
        ("2026-03-01T08:30:00+02:00", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        # the forms sync --since took
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T10:00:00+02:00", datetime(2026, 1, 31, 8, tzinfo=UTC)),
        ("2026-01-31T00:00:00Z", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T10:00:00.250Z", datetime(2026, 1, 31, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-01-31 10:00", datetime(2026, 1, 31, 10, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    since = parse_since(text, NOW)
    assert since == expected
    assert since.utcoffset() == timedelta(0)


def test_a_naive_now_is_utc() -> None:
    assert parse_since("1d", NOW.replace(tzinfo=None)) == NOW - timedelta(days=1)
    assert parse_since("2026-03-01", NOW.replace(tzinfo=None)) == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("7x", "not a duration"),
        ("7 days", "not a duration"),
        ("0d", "longer than zero"),
        ("99999999999999999999d", "3650-day limit"),
        ("yesterday", "neither a duration nor an ISO"),
        ("2026-13-01", "neither a duration nor an ISO"),
        ("2027-01-01", "in the future"),
        ("1h ago", "neither"),
        ("\u0667d", "ASCII"),
        ("\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661", "ASCII"),
        ("2026-01-0\u0661", "ASCII"),
        ("0001-01-01T00:00+01:00", "outside the calendar"),
        ("2026-01-31T10:00:00+25:00", "neither"),
    ],
)
def test_parse_since_refuses_clearly(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as caught:
        parse_since(text, NOW)
    assert str(caught.value).startswith("--since")
    assert "\n" not in str(caught.value)
    assert caught.value.hint


def test_since_cannot_reach_before_the_calendar() -> None:
    with pytest.raises(InputError, match="before the year 1"):
        parse_since("3650d", datetime(1, 6, 1, tzinfo=UTC))


ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))]
)
PAST = st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime(2026, 3, 14),
    timezones=ZONES,  # type: ignore[arg-type]  # the stub types it from its default
)


@given(PAST, st.sampled_from(["T", " "]), st.sampled_from(["seconds", "milliseconds", "auto"]))
def test_iso_times_with_and_without_a_zone(moment: datetime, sep: str, timespec: str) -> None:
    since = parse_since(moment.isoformat(sep=sep, timespec=timespec), NOW)
    expected = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if timespec == "seconds":
        expected = expected.replace(microsecond=0)
    elif timespec == "milliseconds":
        expected = expected.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert since == expected
    assert since.tzinfo is UTC


@given(st.dates(min_value=date(1, 1, 1), max_value=date(2026, 3, 15)))
def test_a_date_alone_is_its_midnight_utc(day: date) -> None:
    assert parse_since(day.isoformat(), NOW) == datetime(day.year, day.month, day.day, tzinfo=UTC)


@given(WHOLE_SECONDS)
def test_durations_count_back_from_now(value: timedelta) -> None:
    assert parse_since(format_duration(value), NOW) == NOW - value


def _refuses_only_with_input_error(text: str) -> None:
    error: InputError | None = None
    try:
        since = parse_since(text, NOW)
    except InputError as exc:
        error = exc
    if error is not None:
        assert error.message.startswith("--since")
        assert "\n" not in error.message
        assert error.hint
        return
    assert since.tzinfo is UTC
    assert since <= NOW


SINCE_ALPHABET = st.sampled_from(list("0123456789-:+TZ .smhdwxyz\u0660\u0667\uff11\u00b2\u00a0"))


@given(st.text(SINCE_ALPHABET, max_size=40))
@example("99999999999999999999d")
@example("9999-12-31T23:59:59-23:59")
@example("0001-01-01T00:00:00+23:59")
@example("2026-01-31T10:00:00+02:00\x00")
def test_any_since_text_is_a_time_or_an_input_error(text: str) -> None:
    _refuses_only_with_input_error(text)


@given(st.text(max_size=60))
def test_arbitrary_text_is_a_time_or_an_input_error(text: str) -> None:
    _refuses_only_with_input_error(text)


@given(st.text(max_size=30))
def test_any_duration_text_is_a_duration_or_a_duration_error(text: str) -> None:
    try:
        value = parse_duration(text, allow_zero=True)
    except DurationError:
        return
    assert timedelta(0) <= value <= MAX_DURATION
