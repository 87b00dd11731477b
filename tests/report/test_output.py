"""Across formats: writing files, secrets, ``--since``, and arbitrary contact data."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import report as rpt
from connector.bounces import BounceType
from connector.durations import parse_since
from connector.errors import InputError
from connector.logs import register_secret, scrub
from tests.fixtures_store import DatabaseUrls
from tests.report.data import (
    NOW,
    SECRET,
    WEEK,
    Db,
    assert_csv_matches_json,
    by_contact,
    fill,
    open_db,
    parse_page,
    table_text,
)


async def test_no_secret_in_any_format(db: Db) -> None:
    register_secret(SECRET)
    await fill(db)
    report = await rpt.build_report(db.store, WEEK, NOW)
    assert "***" in (by_contact(report)["202"].outcome or "")
    outputs = [rpt.render_json(report), rpt.render_csv(report), rpt.render_html(report)]
    outputs.append(table_text(report))
    for text in outputs:
        assert SECRET not in text
        assert "alice@example.com" in text


# --- --since (the one grammar of connector.durations, as ``report`` uses it) -------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        (" 2w ", NOW - timedelta(weeks=2)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T08:30", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
        ("2026-03-01T08:30:00+02:00", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "   ", "7x", "0d", "yesterday", "2026-13-01", "2027-01-01"])
def test_parse_since_refuses_clearly(text: str) -> None:
    with pytest.raises(InputError, match="--since"):
        parse_since(text, NOW)


async def test_write_report_files(report: rpt.Report, tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    rpt.write_report(rpt.render_text(report, rpt.ReportFormat.CSV), rpt.ReportFormat.CSV, target)
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    assert target.read_bytes().decode("utf-8-sig") == rpt.render_csv(report)
    with pytest.raises(InputError, match="cannot write"):
        rpt.write_report("x", rpt.ReportFormat.JSON, tmp_path / "missing" / "r.json")
    with pytest.raises(InputError, match="terminal"):
        rpt.render_text(report, rpt.ReportFormat.TABLE)


# --- arbitrary contact data --------------------------------------------------------------------

_NASTY = st.sampled_from(
    [
        "<script>alert(1)</script>",
        "\"'><img src=x onerror=alert(1)>",
        "=cmd|' /C calc'!A0",
        "@SUM(1)",
        "&amp; &lt; ]]> <!-- -->",
        "\u202eevil\u200b\U0001f600",
        "http://evil.example/x",
        "a\r\nb\x00c\x1b[31m",
    ]
)
_TEXT = st.one_of(_NASTY, st.text(st.characters(exclude_categories=["Cs"]), max_size=24))
_NON_EMPTY = _TEXT.filter(lambda s: s != "")
_HTML_SAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


async def _weird_report(url: str, contact: str, email: str, tag: str, outcome: str) -> rpt.Report:
    db = await open_db(url)
    try:
        event = await db.event(1, contact, email, BounceType.HARD_BOUNCE, outcome)
        await db.step(event, contact, f"tag_add:{tag}")
        return await rpt.build_report(db.store, WEEK, NOW)
    finally:
        await db.store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(contact=_NON_EMPTY, email=_NON_EMPTY, tag=_TEXT, outcome=_TEXT)
def test_arbitrary_contact_data_never_breaks_html_or_csv(
    database_urls: DatabaseUrls, contact: str, email: str, tag: str, outcome: str
) -> None:
    url = database_urls("weird")  # a fresh store for each example
    built = asyncio.run(_weird_report(url, contact, email, tag, outcome))
    if not url.startswith("sqlite"):  # PostgreSQL text cannot hold NUL: the store swaps it
        contact, email, tag, outcome = (
            v.replace("\x00", "\ufffd") for v in (contact, email, tag, outcome)
        )
    row = built.rows[0]
    assert (row.contact_id, row.emails, row.tags) == (contact, [email], [tag])
    assert_csv_matches_json(built)
    parsed = parse_page(rpt.render_html(built))
    steps = len(built.totals.by_outcome)
    assert len([t for t, _ in parsed.tags if t == "tr"]) == 3 + 4 + 2 + (steps + 1 if steps else 0)
    text = "".join(parsed.text)
    for value in (contact, email, tag, scrub(outcome)):
        assert _HTML_SAFE.sub("\ufffd", value) in text
