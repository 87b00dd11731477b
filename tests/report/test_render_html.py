"""The report as an HTML page: self-contained, inert for hostile data, grouped for a person."""

from __future__ import annotations

import json

from connector import report as rpt
from connector.bounces import BounceType
from tests.report.data import (
    NOW,
    WEEK,
    Db,
    by_contact,
    csv_rows,
    parse_page,
    table_text,
)


async def test_html_is_one_self_contained_page(report: rpt.Report) -> None:
    page = rpt.render_html(report)
    for needle in ("http:", "https:", "//", "src=", "href=", "url(", "@import", "<script"):
        assert needle not in page.lower()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1
    assert page.count("<svg") == 1
    parsed = parse_page(page)
    assert "alice@example.com" in "".join(parsed.text)


async def test_html_chart_has_bars_per_type_per_day(report: rpt.Report) -> None:
    parsed = parse_page(rpt.render_html(report))
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
    assert csv_rows(rpt.render_csv(empty)) == []
    assert json.loads(rpt.render_json(empty))["rows"] == []
    page = rpt.render_html(empty)
    assert "No bounces in this period." in page
    parse_page(page)
    assert "0 bounce(s) from 0 contact(s)" in table_text(empty)


_HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</td></tr></table><h1>owned</h1>",
    "{{ 7*7 }}{% raw %}",
]


async def test_hostile_contact_data_is_inert_text(db: Db) -> None:
    for index, value in enumerate(_HOSTILE):
        contact = f"{value}#{index}"
        event = await db.event(1, contact, f"{value}@x.example", BounceType.HARD_BOUNCE, value)
        await db.step(event, contact, f"tag_add:{value}")
        await db.step(event, contact, "opt_out")
    page = rpt.render_html(await rpt.build_report(db.store, WEEK, NOW))
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<svg onload" not in page.lower()
    assert "<h1>owned" not in page
    assert "49" not in page, "a template expression in the data was evaluated"
    parsed = parse_page(page)  # only the page's own tags, no on* attributes
    assert [tag for tag, _ in parsed.tags].count("h1") == 1
    text = "".join(parsed.text)
    for value in _HOSTILE:
        assert f"{value}@x.example" in text
        assert f"Tag: {value}" in text


async def test_contacts_are_grouped_by_what_they_need(report: rpt.Report) -> None:
    parsed = parse_page(rpt.render_html(report))
    headings = [d.strip() for d in parsed.text if d.strip().endswith(")")]
    assert "Needs a person (3)" in headings
    assert "Done automatically (3)" in headings
    assert "Sender-side (0)" in headings
    text = "".join(parsed.text)
    assert "find a new address for this contact" in text
    assert "Opted the address out 9 Mar" in text
    assert "Hard Bounce x3" in text


async def test_a_mail_block_only_contact_is_sender_side(db: Db) -> None:
    await db.event(1, "11", "blocked@example.com", BounceType.MAIL_BLOCK_SPAM_DETECTED)
    built = await rpt.build_report(db.store, WEEK, NOW)
    assert rpt.build.row_group(by_contact(built)["11"]) is rpt.build.Group.SENDER_SIDE
    text = "".join(parse_page(rpt.render_html(built)).text)
    assert "Sender-side (1)" in text
    assert "blocked the sender" in text
