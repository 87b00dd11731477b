"""The bounce report: the weekly "fulfillment list" Keap users used to build by hand.

One row per contact with bounce activity in the period: which bounce types and how often, where
the latest event stands, the most severe action the connector took (and when), and the tags the
connector has applied and not removed since. Totals per bounce type and per action, and counts
per type per day for the chart.

The report reads only the store (events and the audit log), never Keap, so it is cheap, works
offline and shows what the connector did rather than what someone changed in Keap afterwards.
Email addresses appear in full (the list exists so a person can clean those addresses); free
text that could carry anything else (outcomes, errors) goes through the log scrubber, and the
event payloads, audit before/after values and tokens are never read at all.

JSON shape (``version`` 1; keys sorted, times ISO 8601 in UTC, dates ``YYYY-MM-DD``)::

    {"version": 1,
     "period": {"since": TIME, "until": TIME},
     "rows": [{"contact_id": STR|null, "emails": [STR], "total": INT,
               "bounces": {TYPE: INT}, "first_bounce_at": TIME, "last_bounce_at": TIME,
               "status": EVENT_STATUS, "outcome": STR|null,
               "action": "blank_email"|"opt_out"|"none", "action_at": TIME|null,
               "planned_action": "blank_email"|"opt_out"|null,
               "tags": [STR], "planned_tags": ["+TAG"|"-TAG"]}],
     "totals": {"contacts": INT, "bounces": INT, "by_type": {TYPE: INT},
                "by_action": {"blank_email": INT, "opt_out": INT, "none": INT},
                "planned_by_action": {"blank_email": INT, "opt_out": INT}},
     "daily": [{"date": DATE, "counts": {TYPE: INT}}]}

``TYPE`` is a bounce-type slug (DESIGN.md section 3). ``planned_*`` come from dry runs: they are
what the connector would have done, and are never counted as done.
"""

from __future__ import annotations

import csv
import enum
import html
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from connector.bounces import BounceType
from connector.errors import InputError
from connector.logs import scrub
from connector.policy import parse_duration
from connector.store import AuditEntry, Event, StepStatus, Store

REPORT_VERSION = 1
# The store API has no paging; this is far above any real period's volume.
_FETCH_LIMIT = 1_000_000
_SEVERITY = {"none": 0, "opt_out": 1, "blank_email": 2}
_ACTION_KINDS = ("opt_out", "blank_email")
_TAG_KINDS = ("tag_add", "tag_remove")
# A chart of more days than this is unreadable; longer periods start at the first bounce.
_MAX_CHART_DAYS = 366
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class ReportFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


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


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    rows: list[ReportRow]
    totals: Totals
    daily: list[DayCounts] = field(default_factory=list)

    @property
    def bounce_types(self) -> list[str]:
        """The types present, in Keap's order, so columns and legends read the same everywhere."""
        return sorted(self.totals.by_type, key=_type_order)


# --- the period ------------------------------------------------------------------------------


def parse_since(text: str | None, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` ("7d", "24h", "2w") or an ISO date or time.

    A date means its midnight and a time without an offset means UTC, so the same command gives
    the same period on every server.
    """
    value = (text or "").strip()
    if not value:
        raise InputError("--since is empty", hint="give a duration like 7d or 24h, or a date")
    since = _duration_start(value, now) or _iso_start(value)
    if since > now:
        raise InputError(f"--since {value} is in the future", hint="give a past date or time")
    return since


def _duration_start(value: str, now: datetime) -> datetime | None:
    if not value[:1].isdigit() or not value[-1:].isalpha():
        return None
    try:
        return now - parse_duration(value)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None


def _iso_start(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"--since {value!r} is neither a duration nor an ISO date/time",
            hint="e.g. 7d, 24h, 2w, 2024-05-01 or 2024-05-01T08:00:00+02:00",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


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
    )


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
    steps = await _history(store, contact_id)
    latest = events[-1]
    action, action_at = _done_action(steps)
    tags = _net_tags(steps)
    return ReportRow(
        contact_id=contact_id,
        emails=await _emails(store, events),
        bounces=dict(Counter(e.bounce_type for e in events)),
        first_bounce_at=events[0].received_at,
        last_bounce_at=latest.received_at,
        status=latest.status.value,
        outcome=_outcome(latest),
        action=action,
        action_at=action_at,
        planned_action=_planned_action(steps, action),
        tags=tags,
        planned_tags=_planned_tags(steps, tags),
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


def _done_action(steps: Sequence[AuditEntry]) -> tuple[str, datetime | None]:
    """The most severe action done and not undone; undo put the address back, so it no longer
    counts. Its time is when the step reached ``done`` (``updated_at``), not when it was
    first planned."""
    done = [
        s
        for s in steps
        if s.kind in _ACTION_KINDS and s.status is StepStatus.DONE and s.undone_at is None
    ]
    if not done:
        return "none", None
    best = max(done, key=lambda s: (_SEVERITY[s.kind], s.updated_at))
    return best.kind, best.updated_at


def _planned_action(steps: Sequence[AuditEntry], done: str) -> str | None:
    """A dry run's action, shown only when it goes beyond what was really done."""
    planned = [s.kind for s in steps if s.kind in _ACTION_KINDS and s.status is StepStatus.PLANNED]
    best = max(planned, key=_SEVERITY.__getitem__, default=None)
    return best if best is not None and _SEVERITY[best] > _SEVERITY[done] else None


def _tag_name(step: AuditEntry) -> str:
    """The tag is part of the step key (``tag_add:NAME``), present whatever the step's status."""
    return step.step.split(":", 1)[1] if ":" in step.step else step.step


def _net_tags(steps: Sequence[AuditEntry]) -> list[str]:
    """Tags the connector added and did not later remove; a skipped add (the contact already
    had the tag) was not the connector's doing."""
    applied: dict[str, None] = {}
    for step in steps:
        if step.kind not in _TAG_KINDS or step.status is not StepStatus.DONE:
            continue
        if step.kind == "tag_add":
            applied[_tag_name(step)] = None
        else:
            applied.pop(_tag_name(step), None)
    return sorted(applied)


def _planned_tags(steps: Sequence[AuditEntry], tags: list[str]) -> list[str]:
    """Dry-run tag changes that would still change something: "+Tag" or "-Tag"."""
    changes: dict[str, None] = {}
    for step in steps:
        if step.kind not in _TAG_KINDS or step.status is not StepStatus.PLANNED:
            continue
        name = _tag_name(step)
        if step.kind == "tag_add" and name not in tags:
            changes[f"+{name}"] = None
        elif step.kind == "tag_remove" and name in tags:
            changes[f"-{name}"] = None
    return sorted(changes)


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


def _type_order(bounce_type: str) -> tuple[int, str]:
    members = list(BounceType)
    known = bounce_type in {m.value for m in members}
    return (members.index(BounceType(bounce_type)) if known else len(members), bounce_type)


def type_label(bounce_type: str) -> str:
    """Keap's wording for a known type; anything else as stored."""
    try:
        return BounceType(bounce_type).label
    except ValueError:
        return bounce_type


def _row_order(row: ReportRow) -> tuple[int, int, str, str]:
    """Numeric Keap ids in numeric order, then other ids, then rows without an id by address."""
    cid = row.contact_id or ""
    numeric = cid.isdigit() and len(cid) < 19
    return (0 if row.contact_id else 1, int(cid) if numeric else 2**63, cid, ";".join(row.emails))


def _totals(rows: list[ReportRow]) -> Totals:
    by_type: Counter[str] = Counter()
    for row in rows:
        by_type.update(row.bounces)
    by_action = dict.fromkeys(("blank_email", "opt_out", "none"), 0)
    planned = dict.fromkeys(("blank_email", "opt_out"), 0)
    for row in rows:
        by_action[row.action] += 1
        if row.planned_action is not None:
            planned[row.planned_action] += 1
    return Totals(len(rows), sum(by_type.values()), dict(by_type), by_action, planned)


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


# --- flat rows (CSV and HTML share them) ------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def flat_columns(report: Report) -> list[str]:
    """Column headings: fixed fields around one count column per bounce type present."""
    types = [type_label(t) for t in report.bounce_types]
    head = ["contact_id", "emails", "total"]
    tail = ["first_bounce_at", "last_bounce_at", "status", "outcome", "action", "action_at"]
    return [*head, *types, *tail, "planned_action", "tags", "planned_tags"]


def _flat(report: Report, row: ReportRow) -> list[str]:
    counts = [str(row.bounces.get(t, 0)) for t in report.bounce_types]
    return [
        row.contact_id or "",
        "; ".join(row.emails),
        str(row.total),
        *counts,
        _iso(row.first_bounce_at) or "",
        _iso(row.last_bounce_at) or "",
        row.status,
        row.outcome or "",
        row.action,
        _iso(row.action_at) or "",
        row.planned_action or "",
        "; ".join(row.tags),
        "; ".join(row.planned_tags),
    ]


# --- JSON ------------------------------------------------------------------------------------


def report_dict(report: Report) -> dict[str, Any]:
    """The documented shape (see the module docstring)."""
    totals = report.totals
    return {
        "version": REPORT_VERSION,
        "period": {"since": _iso(report.since), "until": _iso(report.until)},
        "rows": [_row_dict(row) for row in report.rows],
        "totals": {
            "contacts": totals.contacts,
            "bounces": totals.bounces,
            "by_type": totals.by_type,
            "by_action": totals.by_action,
            "planned_by_action": totals.planned_by_action,
        },
        "daily": [{"date": d.day.isoformat(), "counts": d.counts} for d in report.daily],
    }


def _row_dict(row: ReportRow) -> dict[str, Any]:
    return {
        "contact_id": row.contact_id,
        "emails": row.emails,
        "total": row.total,
        "bounces": row.bounces,
        "first_bounce_at": _iso(row.first_bounce_at),
        "last_bounce_at": _iso(row.last_bounce_at),
        "status": row.status,
        "outcome": row.outcome,
        "action": row.action,
        "action_at": _iso(row.action_at),
        "planned_action": row.planned_action,
        "tags": row.tags,
        "planned_tags": row.planned_tags,
    }


def render_json(report: Report) -> str:
    """Sorted keys and a trailing newline, so two runs over the same data diff cleanly."""
    return json.dumps(report_dict(report), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --- CSV -------------------------------------------------------------------------------------


def csv_safe(value: str) -> str:
    """A spreadsheet runs a cell starting with = + - @ as a formula; a leading quote stops it."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def render_csv(report: Report) -> str:
    """A header row and one row per contact (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([csv_safe(c) for c in flat_columns(report)])
    for row in report.rows:
        writer.writerow([csv_safe(cell) for cell in _flat(report, row)])
    return out.getvalue()


# --- terminal table --------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M}"


def _bounce_text(row: ReportRow) -> str:
    ordered = sorted(row.bounces.items(), key=lambda item: _type_order(item[0]))
    return "\n".join(f"{type_label(t)} x{n}" for t, n in ordered)


def _action_text(row: ReportRow) -> str:
    parts = [row.action if row.action == "none" else f"{row.action} {_when(row.action_at)}"]
    if row.planned_action:
        parts.append(f"{row.planned_action} (planned)")
    return "\n".join(parts)


def _tags_text(row: ReportRow) -> str:
    planned = [f"{tag} (planned)" for tag in row.planned_tags]
    return "\n".join([*row.tags, *planned])


def _summary_line(report: Report) -> str:
    totals = report.totals
    types = ", ".join(f"{type_label(t)} {totals.by_type[t]}" for t in report.bounce_types)
    actions = ", ".join(f"{a} {n}" for a, n in totals.by_action.items())
    planned = ", ".join(f"{a} {n}" for a, n in totals.planned_by_action.items() if n)
    line = f"{totals.bounces} bounce(s) from {totals.contacts} contact(s)"
    line += f"; by type: {types}; actions: {actions}" if totals.contacts else ""
    return line + (f"; planned (dry run): {planned}" if planned else "")


def render_table(report: Report) -> Table:
    """Cells are ``Text``, never markup, so a contact's data cannot restyle the terminal."""
    title = f"Bounce report {_when(report.since)} to {_when(report.until)} UTC"
    table = Table(title=title, caption=_summary_line(report), show_lines=True)
    for column in ("contact", "email", "bounces", "last bounce", "status", "action", "tags"):
        table.add_column(column)
    for row in report.rows:
        cells = (
            row.contact_id or "-",
            "\n".join(row.emails),
            _bounce_text(row),
            _when(row.last_bounce_at),
            row.status,
            _action_text(row),
            _tags_text(row),
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


# --- HTML ------------------------------------------------------------------------------------

_PALETTE = (
    "#c0392b", "#e67e22", "#f1c40f", "#8e44ad", "#2980b9", "#16a085", "#27ae60", "#7f8c8d",
    "#d35400", "#2c3e50", "#e84393", "#00cec9", "#6c5ce7", "#fdcb6e", "#b33939", "#218c74",
    "#474787", "#cc8e35",
)  # fmt: skip

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:24px;
color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
p.period{color:#555;margin:0 0 16px}
table{border-collapse:collapse;font-size:13px;margin-bottom:16px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.planned{color:#777;font-style:italic}
"""


def _esc(text: str) -> str:
    """Escape for text and attributes; control characters would make the page invalid."""
    return html.escape(_CONTROL.sub("\ufffd", text), quote=True)


def type_color(bounce_type: str) -> str:
    return _PALETTE[_type_order(bounce_type)[0] % len(_PALETTE)]


def render_html(report: Report) -> str:
    """One page with everything inline (no links, scripts, fonts or images) to email as is."""
    title = f"Bounce report {_when(report.since)} to {_when(report.until)} UTC"
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="period">{_esc(_summary_line(report))}</p>',
        "<h2>Bounces per day</h2>",
        _chart(report) if report.rows else "<p>No bounces in this period.</p>",
        "<h2>Totals</h2>",
        _totals_html(report),
        "<h2>Contacts</h2>",
        _rows_html(report) if report.rows else "<p>No contacts to clean.</p>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _table_html(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    header = "".join(f"<th>{_esc(h)}</th>" for h in head)
    lines = [f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>"]
    for row in rows:
        cells = "".join(
            f'<td class="num">{_esc(c)}</td>' if i in numeric else f"<td>{_esc(c)}</td>"
            for i, c in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _totals_html(report: Report) -> str:
    totals = report.totals
    types = [(type_label(t), t, str(totals.by_type[t])) for t in report.bounce_types]
    types.append(("All types", "", str(totals.bounces)))
    actions = [
        (a, str(n), str(totals.planned_by_action.get(a, 0)) if a != "none" else "")
        for a, n in totals.by_action.items()
    ]
    return _table_html(("bounce type", "slug", "bounces"), types, {2}) + _table_html(
        ("action", "contacts", "planned (dry run)"), actions, {1, 2}
    )


def _rows_html(report: Report) -> str:
    columns = flat_columns(report)
    numeric = set(range(2, 3 + len(report.bounce_types)))
    return _table_html(columns, (_flat(report, row) for row in report.rows), numeric)


def _chart(report: Report) -> str:
    """Stacked bars, one per day, a segment per bounce type; each bar carries its own title."""
    width, height, left, bottom, top = 760, 240, 40, 40, 10
    plot_h = height - bottom - top
    days = report.daily
    slot = (width - left - 10) / max(len(days), 1)
    peak = max((sum(d.counts.values()) for d in days), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="bounces per type per day">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    every = max(1, len(days) // 10)
    for index, day in enumerate(days):
        x = left + index * slot
        parts += _day_bars(day, x, slot, top + plot_h, plot_h / peak)
        if index % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                f'font-size="10">{day.day:%m-%d}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + _legend(report)


def _day_bars(day: DayCounts, x: float, slot: float, base: float, scale: float) -> list[str]:
    bars = []
    y = base
    for bounce_type in sorted(day.counts, key=_type_order):
        count = day.counts[bounce_type]
        h = count * scale
        y -= h
        label = f"{day.day.isoformat()}: {type_label(bounce_type)} {count}"
        bars.append(
            f'<rect class="bar" data-type="{_esc(bounce_type)}" data-day="{day.day.isoformat()}" '
            f'data-count="{count}" x="{x + slot * 0.1:.1f}" y="{y:.1f}" '
            f'width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{type_color(bounce_type)}">'
            f"<title>{_esc(label)}</title></rect>"
        )
    return bars


def _legend(report: Report) -> str:
    items = "".join(
        f'<span><i style="background:{type_color(t)}"></i>{_esc(type_label(t))}</span>'
        for t in report.bounce_types
    )
    return f'<div class="legend">{items}</div>'


# --- output ----------------------------------------------------------------------------------


def render_text(report: Report, fmt: ReportFormat) -> str:
    """The file formats; the table is for a terminal and is printed with rich instead."""
    renderers = {
        ReportFormat.CSV: render_csv,
        ReportFormat.JSON: render_json,
        ReportFormat.HTML: render_html,
    }
    if fmt not in renderers:
        raise InputError(f"--format {fmt.value} prints to the terminal only")
    return renderers[fmt](report)


def write_report(text: str, fmt: ReportFormat, output: Path) -> None:
    """CSV gets a byte-order mark so Excel reads it as UTF-8 rather than the local code page."""
    encoding = "utf-8-sig" if fmt is ReportFormat.CSV else "utf-8"
    try:
        output.write_text(text, encoding=encoding, newline="")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
