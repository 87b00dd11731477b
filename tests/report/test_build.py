"""The bounce report over a real store filled through the Store API, on SQLite and PostgreSQL.

The CSV is checked against the JSON with an independent mapping (not the module's own row
flattening), and the HTML with the standard library's parser, so a rendering bug cannot hide
behind the code under test.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from connector import report as rpt
from connector.bounces import BounceType
from connector.errors import InputError
from connector.logs import register_secret, scrub
from connector.store import AuditWrite, NewEvent, StepStatus, Store, open_store
from tests.fixtures_store import DatabaseUrls

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WEEK = NOW - timedelta(days=7)
SECRET = "s3cr3t-webhook-key-0123456789"
FORMULA = "=HYPERLINK(1)"
_keys = itertools.count()


class Clock:
    """The store's clock, moved to each write's time so received_at and created_at are known."""

    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now

    def at(self, when: datetime) -> None:
        self.now = when.timestamp()


@dataclass
class Db:
    store: Store
    clock: Clock

    async def event(
        self,
        days_ago: float,
        contact: str | None,
        email: str | None,
        bounce: BounceType,
        outcome: str | None = "done",
    ) -> int:
        self.clock.at(NOW - timedelta(days=days_ago))
        new = NewEvent("webhook", bounce.value, contact, email, None, f"k{next(_keys)}", "{}")
        event_id = (await self.store.add_event(new, None)).event_id
        if outcome is not None:
            await self.store.complete_event(event_id, outcome)
        return event_id

    async def step(
        self,
        event_id: int,
        contact: str,
        step: str,
        status: StepStatus = StepStatus.DONE,
        *,
        dry_run: bool = False,
        minutes: float = 1,
    ) -> int:
        event = await self.store.get_event(event_id)
        assert event is not None
        self.clock.at(event.received_at + timedelta(minutes=minutes))
        kind = {"blank": "blank_email"}.get(step.split(":")[0], step.split(":")[0])
        written = await self.store.write_audit(
            AuditWrite(event_id, contact, step, kind, status, dry_run=dry_run)
        )
        return written.id


async def _open(url: str) -> Db:
    clock = Clock()
    store = await open_store(url, clock=clock, migrate=True)
    return Db(store, clock)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    opened = await _open(database_url)
    yield opened
    await opened.store.close()


async def _fill(db: Db) -> None:
    """Five contacts in the week, one outside it, one email-only event without a contact."""
    alice = [
        await db.event(d, "101", "alice@example.com", BounceType.HARD_BOUNCE) for d in (6, 4, 1)
    ]
    await db.step(alice[0], "101", "tag_add:First Hard Bounce")
    await db.step(alice[2], "101", "opt_out")
    await db.step(alice[2], "101", "tag_add:Third Strike")
    await db.step(alice[2], "101", "tag_remove:First Hard Bounce", minutes=2)
    await db.step(alice[2], "101", "note")

    bob = await db.event(3, "202", "bob@example.com", BounceType.SOFT_BOUNCE_MAILBOX_FULL)
    await db.step(bob, "202", "tag_add:Mailbox Full")
    await db.step(bob, "202", "tag_add:Already There", StepStatus.SKIPPED)
    bob2 = await db.event(2, "202", "bob@example.com", BounceType.SOFT_BOUNCE_MAILBOX_FULL, None)
    await db.store.fail_event(bob2, f"Keap timed out (key {SECRET})", NOW)

    carol = await db.event(2, "303", "carol@example.com", BounceType.HARD_BOUNCE)
    await db.step(carol, "303", "blank:EMAIL1", StepStatus.PLANNED, dry_run=True)
    await db.step(carol, "303", "tag_add:Bad Address", StepStatus.PLANNED, dry_run=True)

    old = await db.event(20, "404", "dave@example.com", BounceType.MAIL_BLOCK_GENERAL)
    await db.step(old, "404", "blank:EMAIL1")
    await db.step(old, "404", f"tag_add:{FORMULA}")
    await db.event(1, "404", "dave@example.com", BounceType.GENERAL_BOUNCE)

    undone = await db.event(0.5, "505", "erin@example.com", BounceType.HARD_BOUNCE)
    await db.store.mark_undone(await db.step(undone, "505", "blank:EMAIL1"))
    await db.step(undone, "505", "opt_out", StepStatus.PLANNED, dry_run=True)

    await db.event(30, "606", "frank@example.com", BounceType.HARD_BOUNCE)
    await db.event(1.5, None, "-mallory@example.com", BounceType.UNDETERMINED, None)
    await db.event(-1, "707", "future@example.com", BounceType.HARD_BOUNCE)


@pytest.fixture
async def report(db: Db) -> rpt.Report:
    await _fill(db)
    return await rpt.build_report(db.store, WEEK, NOW)


def _by_contact(report: rpt.Report) -> dict[str | None, rpt.ReportRow]:
    return {row.contact_id: row for row in report.rows}


# --- building --------------------------------------------------------------------------------


async def test_rows_cover_the_period_with_counts_status_action_and_tags(
    report: rpt.Report,
) -> None:
    rows = _by_contact(report)
    assert list(rows) == ["101", "202", "303", "404", "505", None]
    alice = rows["101"]
    assert alice.bounces == {"hard_bounce": 3}
    assert alice.emails == ["alice@example.com"]
    assert (alice.action, alice.tags, alice.planned_action) == ("opt_out", ["Third Strike"], None)
    assert alice.action_at == NOW - timedelta(days=1) + timedelta(minutes=1)
    assert alice.first_bounce_at == NOW - timedelta(days=6)
    assert rows["202"].status == "failed"
    assert rows["202"].tags == ["Mailbox Full"]
    assert rows[None].emails == ["-mallory@example.com"]
    assert rows[None].status == "queued"


async def test_dry_run_steps_are_planned_never_done(report: rpt.Report) -> None:
    carol = _by_contact(report)["303"]
    assert (carol.action, carol.action_at) == ("none", None)
    assert carol.planned_action == "blank_email"
    assert (carol.tags, carol.planned_tags) == ([], ["+Bad Address"])
    assert report.totals.planned_by_action == {"blank_email": 1, "opt_out": 1}


async def test_actions_and_tags_are_all_time_and_undone_actions_do_not_count(
    report: rpt.Report,
) -> None:
    rows = _by_contact(report)
    dave = rows["404"]
    assert dave.bounces == {"general_bounce": 1}
    assert (dave.action, dave.tags) == ("blank_email", [FORMULA])
    assert dave.action_at == NOW - timedelta(days=20) + timedelta(minutes=1)
    erin = rows["505"]
    assert (erin.action, erin.planned_action) == ("none", "opt_out")


async def test_totals_match_the_rows(report: rpt.Report) -> None:
    totals = report.totals
    assert totals.by_type == {
        "hard_bounce": 5,
        "soft_bounce_mailbox_full": 2,
        "general_bounce": 1,
        "undetermined": 1,
    }
    assert totals.bounces == 9 == sum(row.total for row in report.rows)
    assert totals.contacts == 6
    assert totals.by_action == {"blank_email": 1, "opt_out": 1, "none": 4}
    daily = sum((sum(d.counts.values()) for d in report.daily), 0)
    assert daily == totals.bounces
    assert report.daily[0].day == WEEK.date()
    assert report.daily[-1].day == NOW.date()


async def test_period_filtering(db: Db) -> None:
    await _fill(db)
    day = await rpt.build_report(db.store, NOW - timedelta(days=1, hours=1), NOW)
    assert {row.contact_id for row in day.rows} == {"101", "404", "505"}
    assert day.totals.by_type == {"hard_bounce": 2, "general_bounce": 1}
    month = await rpt.build_report(db.store, NOW - timedelta(days=31), NOW)
    assert "606" in _by_contact(month)
    assert "707" not in _by_contact(month)


async def test_email_only_event_joins_the_contact_the_worker_found(db: Db) -> None:
    first = await db.event(2, None, "Zed@Example.com", BounceType.HARD_BOUNCE)
    await db.step(first, "808", "opt_out")
    await db.event(1, "808", "zed@example.com", BounceType.HARD_BOUNCE)
    built = await rpt.build_report(db.store, WEEK, NOW)
    assert [(r.contact_id, r.total, r.action) for r in built.rows] == [("808", 2, "opt_out")]
    assert built.rows[0].emails == ["Zed@Example.com"]


async def test_a_callback_without_an_address_shows_the_one_the_worker_struck(db: Db) -> None:
    event = await db.event(2, "909", None, BounceType.HARD_BOUNCE)
    await db.store.record_strike(event, "909", "Found@Example.com", "hard_bounce", NOW)
    await db.event(1, "910", None, BounceType.HARD_BOUNCE, None)
    rows = _by_contact(await rpt.build_report(db.store, WEEK, NOW))
    assert rows["909"].emails == ["found@example.com"]
    assert rows["910"].emails == [], "not processed yet: no address known"


async def test_tags_are_net_of_removals_and_re_adds(db: Db) -> None:
    events = [await db.event(d, "9", "t@example.com", BounceType.HARD_BOUNCE) for d in (5, 4, 3)]
    await db.step(events[0], "9", "tag_add:A")
    await db.step(events[0], "9", "tag_add:B")
    await db.step(events[1], "9", "tag_remove:A")
    await db.step(events[1], "9", "tag_remove:B", StepStatus.PLANNED, dry_run=True)
    await db.step(events[2], "9", "tag_add:A")
    await db.step(events[2], "9", "tag_add:C", StepStatus.PENDING)
    row = (await rpt.build_report(db.store, WEEK, NOW)).rows[0]
    assert (row.tags, row.planned_tags) == (["A", "B"], ["-B"])


# --- CSV and JSON ----------------------------------------------------------------------------


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _unguard(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:2] in "=+-@\t\r" else value


def _expected_csv(row: dict[str, Any], types: list[str]) -> dict[str, str]:
    """The JSON row as the spreadsheet should show it, written independently of report.py."""
    labels = {t.value: t.label for t in BounceType}
    out = {
        "contact_id": row["contact_id"] or "",
        "emails": "; ".join(row["emails"]),
        "total": str(row["total"]),
        "tags": "; ".join(row["tags"]),
        "planned_tags": "; ".join(row["planned_tags"]),
    }
    for name in ("first_bounce_at", "last_bounce_at", "status", "outcome", "action"):
        out[name] = row[name] or ""
    out["action_at"] = row["action_at"] or ""
    out["planned_action"] = row["planned_action"] or ""
    for bounce_type in types:
        out[labels.get(bounce_type, bounce_type)] = str(row["bounces"].get(bounce_type, 0))
    return out


def _assert_csv_matches_json(report: rpt.Report) -> None:
    data = json.loads(rpt.render_json(report))
    csv_rows = [{k: _unguard(v) for k, v in r.items()} for r in _csv_rows(rpt.render_csv(report))]
    types = sorted(data["totals"]["by_type"], key=[t.value for t in BounceType].index)
    assert csv_rows == [_expected_csv(row, types) for row in data["rows"]]


async def test_csv_parses_to_the_same_rows_as_the_json(report: rpt.Report) -> None:
    _assert_csv_matches_json(report)
    header = next(csv.reader(io.StringIO(rpt.render_csv(report))))
    assert header[:4] == ["contact_id", "emails", "total", "Hard Bounce"]


async def test_csv_neutralises_formulas(report: rpt.Report) -> None:
    cells = [c for row in csv.reader(io.StringIO(rpt.render_csv(report))) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert f"'{FORMULA}" in cells
    assert "'-mallory@example.com" in cells
    assert rpt.csv_safe("@SUM(A1)") == "'@SUM(A1)"
    assert rpt.csv_safe("plain") == "plain"


async def test_json_is_stable_and_documented(report: rpt.Report) -> None:
    text = rpt.render_json(report)
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert set(data) == {"version", "period", "rows", "totals", "daily"}
    assert data["period"] == {"since": "2026-03-03T12:00:00+00:00", "until": NOW.isoformat()}
    assert data["daily"][0] == {"date": "2026-03-03", "counts": {}}
    alice = data["rows"][0]
    assert alice["action_at"] == "2026-03-09T12:01:00+00:00"
    assert set(alice) == {
        "contact_id",
        "emails",
        "total",
        "bounces",
        "first_bounce_at",
        "last_bounce_at",
        "status",
        "outcome",
        "action",
        "action_at",
        "planned_action",
        "tags",
        "planned_tags",
    }
    assert rpt.render_json(report) == text


async def test_no_secret_in_any_format(db: Db) -> None:
    register_secret(SECRET)
    await _fill(db)
    report = await rpt.build_report(db.store, WEEK, NOW)
    assert "***" in (_by_contact(report)["202"].outcome or "")
    outputs = [rpt.render_json(report), rpt.render_csv(report), rpt.render_html(report)]
    outputs.append(_table_text(report))
    for text in outputs:
        assert SECRET not in text
        assert "alice@example.com" in text


# --- HTML ------------------------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


_ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "thead", "tbody",
    "tr", "th", "td", "svg", "line", "text", "rect", "div", "span", "i",
}  # fmt: skip


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    names = {tag for tag, _ in parser.tags}
    assert names <= _ALLOWED_TAGS
    for _, attrs in parser.tags:
        assert not {"src", "href", "xlink:href", "action"} & set(attrs)
        assert not [a for a in attrs if a.startswith("on")]
    return parser


async def test_html_is_one_self_contained_page(report: rpt.Report) -> None:
    page = rpt.render_html(report)
    for needle in ("http:", "https:", "//", "src=", "href=", "url(", "@import", "<script"):
        assert needle not in page.lower()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1
    assert page.count("<svg") == 1
    parsed = _parse(page)
    assert "alice@example.com" in "".join(parsed.text)


async def test_html_chart_has_bars_per_type_per_day(report: rpt.Report) -> None:
    parsed = _parse(rpt.render_html(report))
    bars = [a for tag, a in parsed.tags if tag == "rect" and a.get("class") == "bar"]
    seen = {(a["data-type"], a["data-day"]): int(a["data-count"] or 0) for a in bars}
    expected = {(t, d.day.isoformat()): n for d in report.daily for t, n in d.counts.items() if n}
    assert seen == expected
    assert {t for t, _ in seen} == set(report.totals.by_type)
    assert len({a["fill"] for a in bars}) == len(report.totals.by_type)


async def test_empty_period_renders_sensibly(db: Db) -> None:
    empty = await rpt.build_report(db.store, WEEK, NOW)
    assert (empty.rows, empty.daily, empty.totals.bounces) == ([], [], 0)
    assert empty.totals.by_action == {"blank_email": 0, "opt_out": 0, "none": 0}
    assert _csv_rows(rpt.render_csv(empty)) == []
    assert json.loads(rpt.render_json(empty))["rows"] == []
    page = rpt.render_html(empty)
    assert "No bounces in this period." in page
    _parse(page)
    assert "0 bounce(s) from 0 contact(s)" in _table_text(empty)


def _table_text(report: rpt.Report) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(rpt.render_table(report))
    return console.export_text()


async def test_table_shows_each_contact(report: rpt.Report) -> None:
    text = _table_text(report)
    assert "Hard Bounce x3" in text
    assert "blank_email (planned)" in text
    assert "9 bounce(s) from 6 contact(s)" in text


# --- --since and output ----------------------------------------------------------------------


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
    assert rpt.parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    "text", [None, "", "   ", "7x", "0d", "yesterday", "2026-13-01", "2027-01-01"]
)
def test_parse_since_refuses_clearly(text: str | None) -> None:
    with pytest.raises(InputError, match="--since"):
        rpt.parse_since(text, NOW)


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
_TEXT = st.one_of(_NASTY, st.text(st.characters(exclude_categories=("Cs",)), max_size=24))
_NON_EMPTY = _TEXT.filter(lambda s: s != "")
_HTML_SAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


async def _weird_report(url: str, contact: str, email: str, tag: str, outcome: str) -> rpt.Report:
    db = await _open(url)
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
    _assert_csv_matches_json(built)
    parsed = _parse(rpt.render_html(built))
    assert len([t for t, _ in parsed.tags if t == "tr"]) == 3 + 4 + 2
    text = "".join(parsed.text)
    for value in (contact, email, tag, scrub(outcome)):
        assert _HTML_SAFE.sub("\ufffd", value) in text
