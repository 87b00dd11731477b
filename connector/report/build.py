"""The bounce report's data: rows, totals and the daily counts, read from the store.

One row per contact with bounce activity in the period: which bounce types and how often, where
the latest event stands, the most severe action the connector took (and when), and the tags the
connector has applied and not removed since. Totals per bounce type and per action, and counts
per type per day for the chart. The renderers (``render_*.py`` beside this file) only format
what is built here.

The report reads only the store (events and the audit log), never Keap, so it is cheap, works
offline and shows what the connector did rather than what someone changed in Keap afterwards.
Email addresses and contact names appear in full (the list exists so a person can clean those
addresses); free text that could carry anything else (outcomes, errors) goes through the log
scrubber, and the event payloads and tokens are never read at all. Audit values are read only
through the outcome codec (the address a step acted on, the name the target step recorded).

What an audit step *means* (an action, a tag added or removed) is read in one place only: the
"step interpretation" section below, ``_steps_summary``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote, urlsplit

from connector.bounces import BounceCategory, BounceType
from connector.logs import scrub
from connector.pipeline.outcome import (
    Outcome,
    StepKind,
    StepRecord,
    action_text,
    from_audit,
    tally,
)
from connector.policy.model import address_domain
from connector.store import AuditEntry, Event, Store

# The store API has no paging; this is far above any real period's volume.
_FETCH_LIMIT = 1_000_000
# A chart of more days than this is unreadable; longer periods start at the first bounce.
_MAX_CHART_DAYS = 366


@dataclass(frozen=True)
class ReportRow:
    """One contact: its bounces in the period and its state now."""

    contact_id: str | None
    emails: list[str]
    bounces: dict[str, int]
    first_bounce_at: datetime
    last_bounce_at: datetime
    status: str
    outcome: str | None
    action: str
    action_at: datetime | None
    planned_action: str | None
    tags: list[str]
    planned_tags: list[str]
    action_outcome: str = "none"
    outcomes: dict[str, int] = field(default_factory=dict)
    name: str | None = None  # given and family name, as the worker last read them from Keap
    address: str | None = None  # the address the latest event acted on (its target step)
    bounce_times: dict[str, list[datetime]] = field(default_factory=dict)  # per type, in order
    action_skip: str | None = None  # SkipReason name when the latest destructive step skipped
    failed_steps: int = 0  # steps that ended ``failed`` and were not later done
    steps: list[str] = field(default_factory=list)  # notes and tasks, in the codec's words

    @property
    def total(self) -> int:
        return sum(self.bounces.values())


@dataclass(frozen=True)
class Totals:
    contacts: int
    bounces: int
    by_type: dict[str, int]
    by_action: dict[str, int]
    planned_by_action: dict[str, int]
    by_outcome: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]


@dataclass(frozen=True)
class IncidentLine:
    """A sender-side incident at a receiving domain (DESIGN 7a), open or recent."""

    domain: str
    opened_at: datetime
    closed_at: datetime | None
    bounces: int  # counted at the domain since the window that opened it
    peak: int  # the highest count inside one window

    def text(self) -> str:
        since = f"{self.opened_at:%Y-%m-%d %H:%M} UTC"
        state = (
            f"open at {self.domain} since {since}"
            if self.closed_at is None
            else f"closed at {self.domain} ({since} to {self.closed_at:%Y-%m-%d %H:%M} UTC)"
        )
        return f"Incident {state}: {self.bounces} bounce(s), at most {self.peak} in one window"


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    rows: list[ReportRow]
    totals: Totals
    daily: list[DayCounts] = field(default_factory=list)
    incidents: list[IncidentLine] = field(default_factory=list)  # open ones and the period's

    @property
    def bounce_types(self) -> list[str]:
        """The types present, in Keap's order, so columns and legends read the same everywhere."""
        return sorted(self.totals.by_type, key=type_order)


# --- building --------------------------------------------------------------------------------


async def build_report(store: Store, since: datetime, now: datetime) -> Report:
    """Gather the period's events, then each contact's whole audit history.

    Events are filtered to the period; actions and tags are not, because the report answers
    "what state is this contact in now", and a tag added last month is still on the contact.
    """
    events = [
        e for e in await store.list_events(since=since, limit=_FETCH_LIMIT) if e.received_at <= now
    ]
    groups = await _group_by_contact(store, events)
    rows = [await _row(store, contact_id, group) for (contact_id, _), group in groups.items()]
    rows.sort(key=_row_order)
    return Report(
        since=since,
        until=now,
        rows=rows,
        totals=_totals(rows),
        daily=_daily(events, since, now),
        incidents=await _incidents(store, since, now),
    )


async def _incidents(store: Store, since: datetime, now: datetime) -> list[IncidentLine]:
    """Incidents open now or opened or closed in the period; the open ones first."""
    found = [i for i in await store.list_incidents(since) if i.opened_at <= now]
    lines = [IncidentLine(i.domain, i.opened_at, i.closed_at, i.bounces, i.peak) for i in found]
    return sorted(lines, key=lambda i: (i.closed_at is not None, -i.opened_at.timestamp()))


def row_incident(report: Report, row: ReportRow) -> str | None:
    """The incident at the row's receiving domain in the report's words (CSV/JSON ``incident``)."""
    found = incident_for(report, row.address or (row.emails[0] if row.emails else None))
    return found.text() if found is not None else None


def incident_for(report: Report, email: str | None) -> IncidentLine | None:
    """The report's incident at the address's receiving domain, the open one first."""
    if not email:
        return None
    domain = address_domain(email)
    return next((i for i in report.incidents if i.domain == domain), None)


async def _group_by_contact(
    store: Store, events: list[Event]
) -> dict[tuple[str | None, str], list[Event]]:
    """Key events by Keap contact id; an event posted with only an address borrows the id the
    worker found for it (from its audit), else the id of another event with that address.

    Events no contact can be found for are grouped by address under ``(None, address)``.
    """
    resolved = {e.id: e.contact_id or await _audited_contact(store, e) for e in events}
    by_email = {e.email.casefold(): resolved[e.id] for e in events if e.email and resolved[e.id]}
    groups: dict[tuple[str | None, str], list[Event]] = {}
    for event in sorted(events, key=lambda e: (e.received_at, e.id)):
        address = (event.email or f"event {event.id}").casefold()
        contact_id = resolved[event.id] or by_email.get(address)
        key = (contact_id, "") if contact_id else (None, address)
        groups.setdefault(key, []).append(event)
    return groups


async def _audited_contact(store: Store, event: Event) -> str | None:
    steps = await store.audit_for_event(event.id)
    return steps[0].contact_id if steps else None


async def _row(store: Store, contact_id: str | None, events: list[Event]) -> ReportRow:
    summary = _steps_summary(await _history(store, contact_id))
    latest = events[-1]
    times: dict[str, list[datetime]] = {}
    for event in events:
        times.setdefault(event.bounce_type, []).append(event.received_at)
    return ReportRow(
        contact_id=contact_id,
        emails=await _emails(store, events),
        bounces=dict(Counter(e.bounce_type for e in events)),
        first_bounce_at=events[0].received_at,
        last_bounce_at=latest.received_at,
        status=latest.status.value,
        outcome=_outcome(latest),
        action=summary.action,
        action_at=summary.action_at,
        planned_action=summary.planned_action,
        tags=summary.tags,
        planned_tags=summary.planned_tags,
        action_outcome=summary.action_outcome,
        outcomes=summary.outcomes,
        name=summary.name,
        address=summary.address,
        bounce_times=times,
        action_skip=summary.action_skip,
        failed_steps=summary.failed_steps,
        steps=summary.steps,
    )


async def _history(store: Store, contact_id: str | None) -> list[AuditEntry]:
    """Every step for the contact, oldest first by when it reached its status."""
    if contact_id is None:
        return []
    steps = await store.list_audit(contact_id=contact_id, limit=_FETCH_LIMIT)
    return sorted(steps, key=lambda a: (a.updated_at, a.id))


def _outcome(event: Event) -> str | None:
    """The worker's summary, or why it is not done yet; scrubbed like a log line."""
    text = event.outcome if event.outcome is not None else event.last_error
    return None if text is None else scrub(text)


# --- step interpretation ---------------------------------------------------------------------
# What a contact's steps amount to, read through the outcome codec (DESIGN 1b), the same
# records the audit log, events list and Keap notes show; nothing here parses step keys.

ACTIONS = ("blank_email", "opt_out", "none")


@dataclass(frozen=True)
class StepsSummary:
    """What a contact's audit history amounts to now."""

    action: str  # one of ACTIONS: the most severe destructive step done and not undone
    action_at: datetime | None
    planned_action: str | None
    tags: list[str]
    planned_tags: list[str]
    action_outcome: str  # the latest destructive step as every output words it, or "none"
    outcomes: dict[str, int]  # the contact's steps by "kind outcome (reason)"
    name: str | None = None
    address: str | None = None
    action_skip: str | None = None
    failed_steps: int = 0
    steps: list[str] = field(default_factory=list)


def _steps_summary(steps: Sequence[AuditEntry]) -> StepsSummary:
    """The contact's state from its steps (oldest first by ``updated_at``)."""
    real = [(entry, from_audit(entry)) for entry in steps if not entry.dry_run]
    dry = [from_audit(entry) for entry in steps if entry.dry_run]
    action, action_at = _done_action(real)
    tags = _net_tags([record for _, record in real])
    latest = [record for _, record in real if record.kind.destructive][-1:]
    skipped = latest[0].reason if latest and latest[0].outcome is Outcome.SKIPPED else None
    targets = [r for _, r in real if r.kind is StepKind.TARGET] or [
        r for r in dry if r.kind is StepKind.TARGET
    ]
    return StepsSummary(
        action=action,
        action_at=action_at,
        planned_action=_planned_action(dry, action),
        tags=tags,
        planned_tags=_planned_tags(dry, tags),
        action_outcome=action_text(latest),
        outcomes=tally(record for _, record in real),
        name=_name(targets),
        address=(targets[-1].after or {}).get("email") if targets else None,
        action_skip=skipped.code.name if skipped is not None else None,
        failed_steps=_failed(record for _, record in real),
        steps=_written([record for _, record in real]),
    )


def _name(targets: Sequence[StepRecord]) -> str | None:
    """The latest name a target step recorded (the worker's last read of the contact)."""
    for record in reversed(targets):
        after = record.after or {}
        parts = [after.get("given_name"), after.get("family_name")]
        name = " ".join(part.strip() for part in parts if part and part.strip())
        if name:
            return name
    return None


def _failed(steps: Iterable[StepRecord]) -> int:
    """Steps whose last word is ``failed`` (a later ``done`` of the same step clears it)."""
    last: dict[str, Outcome] = {}
    for step in steps:
        last[step.key] = step.outcome
    return sum(1 for outcome in last.values() if outcome is Outcome.FAILED)


def _written(steps: Sequence[StepRecord]) -> list[str]:
    """Notes, tasks and alerts (``notify``), the latest record of each, as the codec
    describes them."""
    latest: dict[str, StepRecord] = {}
    for step in steps:
        if step.kind in (StepKind.NOTE, StepKind.TASK, StepKind.NOTIFY):
            latest[step.key] = step
    return [step.describe() for step in latest.values()]


def _done_action(steps: Sequence[tuple[AuditEntry, StepRecord]]) -> tuple[str, datetime | None]:
    """The most severe action done and not undone; undo put the address back, so it no longer
    counts. Its time is when the step reached ``done`` (``updated_at``), not when it was
    first planned."""
    done = [
        (entry, record)
        for entry, record in steps
        if record.kind.destructive and record.outcome is Outcome.DONE and not record.undone
    ]
    if not done:
        return "none", None
    entry, record = max(done, key=lambda pair: (pair[1].kind.severity, pair[0].updated_at))
    return record.kind.value, entry.updated_at


def _planned_action(steps: Sequence[StepRecord], done: str) -> str | None:
    """A dry run's action, shown only when it goes beyond what was really done."""
    planned = [s.kind for s in steps if s.kind.destructive and s.outcome is Outcome.PLANNED]
    best = max(planned, key=lambda kind: kind.severity, default=None)
    floor = StepKind(done).severity if done != "none" else 0
    return best.value if best is not None and best.severity > floor else None


def _net_tags(steps: Sequence[StepRecord]) -> list[str]:
    """Tags the connector added and did not later remove; a skipped add (the contact already
    had the tag) was not the connector's doing."""
    applied: dict[str, None] = {}
    for step in steps:
        if step.outcome is not Outcome.DONE:
            continue
        if step.kind is StepKind.TAG_ADD:
            applied[step.subject] = None
        elif step.kind is StepKind.TAG_REMOVE:
            applied.pop(step.subject, None)
    return sorted(applied)


def _planned_tags(steps: Sequence[StepRecord], tags: list[str]) -> list[str]:
    """Dry-run tag changes that would still change something: "+Tag" or "-Tag"."""
    changes: dict[str, None] = {}
    for step in steps:
        if step.outcome is not Outcome.PLANNED:
            continue
        if step.kind is StepKind.TAG_ADD and step.subject not in tags:
            changes[f"+{step.subject}"] = None
        elif step.kind is StepKind.TAG_REMOVE and step.subject in tags:
            changes[f"-{step.subject}"] = None
    return sorted(changes)


# --- addresses, order, totals ----------------------------------------------------------------


async def _emails(store: Store, events: list[Event]) -> list[str]:
    """The posted addresses, or for a callback posted without one, the address the worker
    found bounced (its strike), so every row with an action names the address it hit."""
    found = [e.email or await store.struck_address(e.id) for e in events]
    return _distinct(email for email in found if email)


def _distinct(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return list(seen.values())


def type_order(bounce_type: str) -> tuple[int, str]:
    """Keap's order of bounce types; unknown slugs after the known ones, alphabetically."""
    members = list(BounceType)
    known = bounce_type in {m.value for m in members}
    return (members.index(BounceType(bounce_type)) if known else len(members), bounce_type)


def type_label(bounce_type: str) -> str:
    """Keap's wording for a known type; anything else as stored."""
    try:
        return BounceType(bounce_type).label
    except ValueError:
        return bounce_type


def is_sender_side(row: ReportRow) -> bool:
    """Every bounce of the row is a mail block: the sender's reputation, not the address."""
    categories = set()
    for bounce_type in row.bounces:
        try:
            categories.add(BounceType(bounce_type).category)
        except ValueError:
            return False
    return categories == {BounceCategory.BLOCK}


def _row_order(row: ReportRow) -> tuple[int, int, str, str]:
    """Numeric Keap ids in numeric order, then other ids, then rows without an id by address."""
    cid = row.contact_id or ""
    numeric = cid.isascii() and cid.isdigit() and len(cid) < 19
    return (0 if row.contact_id else 1, int(cid) if numeric else 2**63, cid, ";".join(row.emails))


def _totals(rows: list[ReportRow]) -> Totals:
    by_type: Counter[str] = Counter()
    for row in rows:
        by_type.update(row.bounces)
    by_action = dict.fromkeys(ACTIONS, 0)
    planned = dict.fromkeys(ACTIONS[:-1], 0)
    for row in rows:
        by_action[row.action] += 1
        if row.planned_action is not None:
            planned[row.planned_action] += 1
    by_outcome: Counter[str] = Counter()
    for row in rows:
        by_outcome.update(row.outcomes)
    return Totals(
        len(rows), sum(by_type.values()), dict(by_type), by_action, planned, dict(by_outcome)
    )


def _daily(events: list[Event], since: datetime, now: datetime) -> list[DayCounts]:
    """Every day of the period (zero days included, so gaps show), in UTC."""
    if not events:
        return []
    per_day: dict[date, Counter[str]] = {}
    for event in events:
        per_day.setdefault(event.received_at.astimezone(UTC).date(), Counter())[
            event.bounce_type
        ] += 1
    first, last = since.astimezone(UTC).date(), now.astimezone(UTC).date()
    if (last - first).days >= _MAX_CHART_DAYS:
        first = min(per_day)
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [DayCounts(day, dict(per_day.get(day, Counter()))) for day in days]


def iso(value: datetime | None) -> str | None:
    """A time as the machine formats write it: ISO 8601 in UTC, to the second."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def when(value: datetime | None) -> str:
    """A time as the human formats write it: ``YYYY-MM-DD HH:MM`` in UTC."""
    return "" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M}"


def summary_line(report: Report) -> str:
    """One sentence of totals, shared by the terminal table and the HTML page."""
    totals = report.totals
    types = ", ".join(f"{type_label(t)} {totals.by_type[t]}" for t in report.bounce_types)
    actions = ", ".join(f"{a} {n}" for a, n in totals.by_action.items())
    planned = ", ".join(f"{a} {n}" for a, n in totals.planned_by_action.items() if n)
    steps = ", ".join(f"{step} {n}" for step, n in totals.by_outcome.items())
    line = f"{totals.bounces} bounce(s) from {totals.contacts} contact(s)"
    line += f"; by type: {types}; actions: {actions}" if totals.contacts else ""
    line += f"; steps: {steps}" if steps else ""
    return line + (f"; planned (dry run): {planned}" if planned else "")


# --- for a person: which group a row belongs to and what is left to do ------------------------


class Group(enum.StrEnum):
    """How the page for a person sorts contacts (issue 14): what needs a person comes first."""

    NEEDS_A_PERSON = "needs a person"
    DONE = "done automatically"
    SENDER_SIDE = "sender-side"


# What a person must look at, beyond a finished action: the connector held back on purpose.
_HELD_BACK = {"PROTECTED", "NOT_ON_CONTACT", "ALREADY_NON_MARKETABLE"}


def row_group(row: ReportRow) -> Group:
    if is_sender_side(row) or row.action_skip == "INCIDENT_OPEN":
        return Group.SENDER_SIDE
    if row.status in ("failed", "dead") or row.failed_steps:
        return Group.NEEDS_A_PERSON
    if row.action != "none" or row.action_skip in _HELD_BACK:
        return Group.NEEDS_A_PERSON
    return Group.DONE


_HELD_BACK_TODO = {
    "PROTECTED": "Protected contact: nothing was opted out; decide by hand about this address.",
    "NOT_ON_CONTACT": "The bounced address is not on the contact: check which address bounced.",
    "ALREADY_NON_MARKETABLE": "Keap no longer mails this address: find a new address.",
    "INCIDENT_OPEN": "Held back while the receiving domain blocks the sender: nothing per contact.",
}


def left_to_do(row: ReportRow) -> str:
    """The next step for a person, in a few words; empty when there is none."""
    if row.status in ("failed", "dead"):
        return "Not finished: check the error, then retry (connector events retry)."
    if row.failed_steps:
        return "A step failed: see connector events show, then retry (connector events retry)."
    if is_sender_side(row):
        return "Nothing for this contact: the receiving server blocked the sender."
    if row.action == "blank_email":
        return "The address was removed: find a new address for this contact."
    if row.action == "opt_out":
        return "The address was opted out: find a new address for this contact."
    if row.action_skip in _HELD_BACK_TODO:
        return _HELD_BACK_TODO[row.action_skip]
    if row.status in ("queued", "processing"):
        return "Nothing yet: the connector is still working on it."
    return ""


# --- dates and history in the reader's words ---------------------------------------------------


def short_day(value: date | datetime | None, until: datetime | None = None) -> str:
    """``9 Mar`` (UTC), with the year only when it is not the year of ``until``."""
    if value is None:
        return ""
    day = value.astimezone(UTC).date() if isinstance(value, datetime) else value
    text = f"{day.day} {day:%b}"
    year = until.astimezone(UTC).year if until is not None else day.year
    return f"{text} {day.year}" if day.year != year else text


def period_text(report: Report) -> str:
    """``Tue 3 Mar to Tue 10 Mar 2026``: the period as a person says it."""
    first, last = report.since.astimezone(UTC), report.until.astimezone(UTC)
    start = f"{first:%a} {first.day} {first:%b}" + (
        f" {first.year}" if first.year != last.year else ""
    )
    return f"{start} to {last:%a} {last.day} {last:%b} {last.year}"


_MAX_DAYS_SHOWN = 4


def bounce_history(row: ReportRow, until: datetime) -> list[str]:
    """``Hard Bounce x3: 2 Nov, 9 Nov, 16 Nov``, one line per type in Keap's order; a day
    with several bounces says so (``9 Nov (2)``); a long run shows its first and last days."""
    lines = []
    for bounce_type in sorted(row.bounces, key=type_order):
        counts = Counter(short_day(t, until) for t in row.bounce_times.get(bounce_type, []))
        days = [f"{day} ({n})" if n > 1 else day for day, n in counts.items()]
        if len(days) > _MAX_DAYS_SHOWN:
            days = [*days[:2], f"... {days[-1]}"]
        line = f"{type_label(bounce_type)} x{row.bounces[bounce_type]}"
        lines.append(f"{line}: {', '.join(days)}" if days else line)
    return lines


def done_lines(row: ReportRow, until: datetime) -> list[str]:
    """What the connector did, in the outcome record's words (DESIGN 1b), for a person."""
    lines = []
    if row.action_outcome != "none":
        done = row.action_at and row.action_outcome.startswith(f"{row.action} done")
        when_done = f", {short_day(row.action_at, until)}" if done else ""
        lines.append(row.action_outcome + when_done)
    if row.planned_action:
        lines.append(f"{row.planned_action} (planned)")
    lines += row.steps
    return lines


def contact_link(template: str | None, contact_id: str | None) -> str | None:
    """``CONNECTOR_CONTACT_URL`` with the id filled in (percent-encoded); only http(s) links."""
    if not template or not contact_id or "{contact_id}" not in template:
        return None
    url = template.replace("{contact_id}", quote(contact_id, safe=""))
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None
