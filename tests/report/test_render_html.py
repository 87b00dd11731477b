"""The report as an HTML page: self-contained, inert for hostile data, grouped for a person."""

from __future__ import annotations

import json

from connector import report as rpt
from connector.bounces import BounceType
from connector.pipeline.outcome import Outcome, Reason, SkipReason, StepKind, StepRecord, to_audit
from tests.report.data import (
    NOW,
    WEEK,
    Db,
    by_contact,
    csv_rows,
    links,
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
    assert "opt_out done, 9 Mar" in text, "the outcome record's words, with the day"
    assert "Hard Bounce x3: 4 Mar, 6 Mar, 9 Mar" in text


async def test_a_mail_block_only_contact_is_sender_side(db: Db) -> None:
    await db.event(1, "11", "blocked@example.com", BounceType.MAIL_BLOCK_SPAM_DETECTED)
    built = await rpt.build_report(db.store, WEEK, NOW)
    assert rpt.build.row_group(by_contact(built)["11"]) is rpt.build.Group.SENDER_SIDE
    text = "".join(parse_page(rpt.render_html(built)).text)
    assert "Sender-side (1)" in text
    assert "blocked the sender" in text


async def _record(db: Db, event_id: int, contact: str, record: StepRecord) -> None:
    await db.store.write_audit(
        to_audit(record, event_id=event_id, contact_id=contact, detail=None, dry_run=False)
    )


def _target(email: str, given: str | None, family: str | None) -> StepRecord:
    after = {"email": email, "field": "EMAIL1", "evidence": "posted address"}
    return StepRecord(
        StepKind.TARGET,
        "",
        Outcome.DONE,
        after={**after, "given_name": given, "family_name": family},
    )


async def test_a_contact_is_named_and_linked(db: Db) -> None:
    event = await db.event(2, "77", "ann@example.com", BounceType.HARD_BOUNCE)
    await db.event(1, "77", "ann@example.com", BounceType.HARD_BOUNCE)
    await _record(db, event, "77", _target("ann@example.com", "Ann", "O'Neil <b>"))
    await _record(db, event, "77", StepRecord(StepKind.OPT_OUT, "", Outcome.DONE))
    await _record(db, event, "77", StepRecord(StepKind.TASK, "Find a new address", Outcome.DONE))
    built = await rpt.build_report(db.store, WEEK, NOW)
    row = by_contact(built)["77"]
    assert (row.name, row.address) == ("Ann O'Neil <b>", "ann@example.com")
    template = "https://app.example/Contact/manageContact.jsp?view=edit&ID={contact_id}"
    page = rpt.render_html(built, contact_url=template)
    assert links(page) == [
        ("Ann O'Neil <b>", "https://app.example/Contact/manageContact.jsp?view=edit&ID=77")
    ]
    assert "&amp;ID=77" in page, "the link is escaped in the attribute"
    text = "".join(parse_page(page).text)
    assert "Hard Bounce x2: 8 Mar, 9 Mar" in text
    assert "task 'Find a new address': done" in text
    assert "Needs a person (1)" in text


async def test_contact_links_are_only_http_and_ids_are_encoded(db: Db) -> None:
    await db.event(1, "8/../x?y=1", "z@example.com", BounceType.HARD_BOUNCE)
    built = await rpt.build_report(db.store, WEEK, NOW)
    page = rpt.render_html(built, contact_url="https://keap.example/c/{contact_id}")
    assert [href for _, href in links(page)] == ["https://keap.example/c/8%2F..%2Fx%3Fy%3D1"]
    for bad in ("javascript:alert(1)//{contact_id}", "data:text/html,{contact_id}", "no id"):
        assert links(rpt.render_html(built, contact_url=bad)) == []


async def test_held_back_steps_need_a_person(db: Db) -> None:
    for contact, reason in (("1", SkipReason.PROTECTED), ("2", SkipReason.NOT_ON_CONTACT)):
        event = await db.event(1, contact, f"{contact}@example.com", BounceType.HARD_BOUNCE)
        skipped = StepRecord(StepKind.OPT_OUT, "", Outcome.SKIPPED, Reason(reason))
        await _record(db, event, contact, skipped)
    event = await db.event(1, "3", "3@example.com", BounceType.HARD_BOUNCE)
    await _record(db, event, "3", StepRecord(StepKind.NOTE, "", Outcome.FAILED))
    built = await rpt.build_report(db.store, WEEK, NOW)
    rows = by_contact(built)
    groups = {cid: rpt.build.row_group(row) for cid, row in rows.items()}
    assert set(groups.values()) == {rpt.build.Group.NEEDS_A_PERSON}
    assert "Protected contact" in rpt.build.left_to_do(rows["1"])
    assert "not on the contact" in rpt.build.left_to_do(rows["2"])
    assert "A step failed" in rpt.build.left_to_do(rows["3"])
    text = "".join(parse_page(rpt.render_html(built)).text)
    assert "opt_out skipped (protected contact)" in text


async def test_same_day_bounces_and_long_runs_stay_short(db: Db) -> None:
    for days_ago in (6, 5.9, 5, 4, 3, 2, 1):
        await db.event(days_ago, "9", "x@example.com", BounceType.SOFT_BOUNCE_GENERAL)
    built = await rpt.build_report(db.store, WEEK, NOW)
    (line,) = rpt.build.bounce_history(by_contact(built)["9"], NOW)
    assert line == "Soft Bounce - General x7: 4 Mar (2), 5 Mar, ... 9 Mar"


async def test_chart_labels_every_day_of_a_week(report: rpt.Report) -> None:
    parsed = parse_page(rpt.render_html(report))
    text = [d.strip() for d in parsed.text]
    for day in ("Tue 3 Mar", "Wed 4 Mar", "Mon 9 Mar", "Tue 10 Mar"):
        assert day in text
    legend = [rpt.type_label(t) for t in report.bounce_types]
    assert all(label in text for label in legend)


async def test_the_worker_records_the_name_the_report_shows(db: Db) -> None:
    from connector.keap.models import Contact, EmailAddress
    from connector.pipeline.plan import target_record
    from connector.pipeline.target import pick

    address = EmailAddress(email="kim@example.com", field="EMAIL1")
    contact = Contact(id="31", given_name="Kim", family_name="Nguyen", email_addresses=[address])
    target = pick(contact, "kim@example.com")
    assert target is not None
    event = await db.event(1, "31", "kim@example.com", BounceType.HARD_BOUNCE)
    await _record(db, event, "31", target_record(target, Outcome.DONE))
    row = by_contact(await rpt.build_report(db.store, WEEK, NOW))["31"]
    assert (row.name, row.address) == ("Kim Nguyen", "kim@example.com")
