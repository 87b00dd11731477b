"""Building the report: rows, actions, tags, totals and the period, over a real store."""

from __future__ import annotations

from datetime import timedelta

from connector import report as rpt
from connector.bounces import BounceType
from connector.store import StepStatus
from tests.report.data import FORMULA, NOW, WEEK, Db, by_contact, fill


async def test_rows_cover_the_period_with_counts_status_action_and_tags(
    report: rpt.Report,
) -> None:
    rows = by_contact(report)
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
    carol = by_contact(report)["303"]
    assert (carol.action, carol.action_at) == ("none", None)
    assert carol.planned_action == "blank_email"
    assert (carol.tags, carol.planned_tags) == ([], ["+Bad Address"])
    assert report.totals.planned_by_action == {"blank_email": 1, "opt_out": 1}


async def test_actions_and_tags_are_all_time_and_undone_actions_do_not_count(
    report: rpt.Report,
) -> None:
    rows = by_contact(report)
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
    await fill(db)
    day = await rpt.build_report(db.store, NOW - timedelta(days=1, hours=1), NOW)
    assert {row.contact_id for row in day.rows} == {"101", "404", "505"}
    assert day.totals.by_type == {"hard_bounce": 2, "general_bounce": 1}
    month = await rpt.build_report(db.store, NOW - timedelta(days=31), NOW)
    assert "606" in by_contact(month)
    assert "707" not in by_contact(month)


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
    rows = by_contact(await rpt.build_report(db.store, WEEK, NOW))
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
