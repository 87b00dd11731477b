"""The report tests' data: a real store filled through the Store API, and format checks.

The CSV is checked against the JSON with an independent mapping (not the module's own row
flattening), and the HTML with the standard library's parser, so a rendering bug cannot hide
behind the code under test.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from rich.console import Console

from connector import report as rpt
from connector.bounces import BounceType
from connector.store import AuditWrite, NewEvent, StepStatus, Store, open_store

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


async def open_db(url: str) -> Db:
    clock = Clock()
    store = await open_store(url, clock=clock, migrate=True)
    return Db(store, clock)


async def fill(db: Db) -> None:
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


def by_contact(report: rpt.Report) -> dict[str | None, rpt.ReportRow]:
    return {row.contact_id: row for row in report.rows}


# --- CSV against JSON ------------------------------------------------------------------------


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def unguard(value: str) -> str:
    """Undo the CSV guard, written independently of render_csv.py: an apostrophe before a
    cell a spreadsheet would run (= + - @ after any leading blanks, or a leading tab or CR)."""
    rest = value[1:]
    guarded = rest[:1] in ("\t", "\r") or rest.lstrip()[:1] in ("=", "+", "-", "@")
    return rest if value.startswith("'") and guarded else value


def _expected_csv(row: dict[str, Any], types: list[str]) -> dict[str, str]:
    """The JSON row as the spreadsheet should show it, written independently of report/."""
    labels = {t.value: t.label for t in BounceType}
    out = {
        "contact_id": row["contact_id"] or "",
        "emails": "; ".join(row["emails"]),
        "total": str(row["total"]),
        "tags": "; ".join(row["tags"]),
        "planned_tags": "; ".join(row["planned_tags"]),
    }
    names: tuple[str, ...] = (
        "first_bounce_at",
        "last_bounce_at",
        "status",
        "outcome",
        "action",
        "action_outcome",
    )
    names += ("name", "address", "incident")
    for name in names:
        out[name] = row[name] or ""
    out["action_at"] = row["action_at"] or ""
    out["planned_action"] = row["planned_action"] or ""
    for bounce_type in types:
        out[labels.get(bounce_type, bounce_type)] = str(row["bounces"].get(bounce_type, 0))
    return out


def assert_csv_matches_json(report: rpt.Report) -> None:
    data = json.loads(rpt.render_json(report))
    rows = [{k: unguard(v) for k, v in r.items()} for r in csv_rows(rpt.render_csv(report))]
    types = sorted(data["totals"]["by_type"], key=[t.value for t in BounceType].index)
    assert rows == [_expected_csv(row, types) for row in data["rows"]]


# --- HTML and the table ----------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "thead", "tbody",
    "tr", "th", "td", "svg", "line", "text", "rect", "div", "span", "i", "b", "br", "footer", "a",
}  # fmt: skip


def parse_page(page: str) -> _Page:
    """The page's own tags only; the one link kind allowed is an http(s) ``<a href>`` (a
    contact in Keap, when ``CONNECTOR_CONTACT_URL`` is set)."""
    parser = _Page()
    parser.feed(page)
    parser.close()
    names = {tag for tag, _ in parser.tags}
    assert names <= ALLOWED_TAGS
    for tag, attrs in parser.tags:
        assert not {"src", "xlink:href", "action", "formaction"} & set(attrs)
        assert not [a for a in attrs if a.startswith("on")]
        if "href" in attrs:
            assert tag == "a"
            assert (attrs["href"] or "").startswith(("https://", "http://"))
    return parser


def links(page: str) -> list[tuple[str, str]]:
    """The page's links: (text, href) in page order."""
    found: list[tuple[str, str]] = []

    class _Links(HTMLParser):
        href: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self.href = dict(attrs).get("href")

        def handle_endtag(self, tag: str) -> None:
            if tag == "a":
                self.href = None

        def handle_data(self, data: str) -> None:
            if self.href is not None:
                found.append((data, self.href))

    parser = _Links(convert_charrefs=True)
    parser.feed(page)
    parser.close()
    return found


def table_text(report: rpt.Report) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(rpt.render_table(report))
    return console.export_text()
