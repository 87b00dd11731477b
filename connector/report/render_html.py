"""The report as one self-contained HTML page for a person: a chart, totals, and the contacts
grouped by what they need (templates/report.html.j2).

The page comes from a Jinja2 template with autoescape on, so every value from outside (names,
addresses, tags, outcomes) is text, never markup; control characters, which would make the page
invalid, are replaced (U+FFFD) before escaping. Everything is inline (no links, scripts, fonts
or images), so the page can be emailed as is. The chart's geometry is computed here and only
drawn by the template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import TYPE_CHECKING

from connector.report.build import (
    DayCounts,
    Group,
    Report,
    ReportRow,
    left_to_do,
    row_group,
    summary_line,
    type_label,
    type_order,
    when,
)

if TYPE_CHECKING:
    import jinja2

_PALETTE = (
    "#c0392b", "#e67e22", "#f1c40f", "#8e44ad", "#2980b9", "#16a085", "#27ae60", "#7f8c8d",
    "#d35400", "#2c3e50", "#e84393", "#00cec9", "#6c5ce7", "#fdcb6e", "#b33939", "#218c74",
    "#474787", "#cc8e35",
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP = 760, 240, 40, 40, 10


def type_color(bounce_type: str) -> str:
    return _PALETTE[type_order(bounce_type)[0] % len(_PALETTE)]


def _clean(value: object) -> object:
    """Jinja's ``finalize``: every printed string loses the characters HTML cannot carry."""
    return _CONTROL.sub("\ufffd", value) if isinstance(value, str) else value


@cache
def _template() -> jinja2.Template:
    import jinja2  # only the HTML report needs it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("connector.report", "templates"),
        autoescape=True,
        finalize=_clean,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def render_html(report: Report) -> str:
    """One page with everything inline (no links, scripts, fonts or images) to email as is."""
    title = f"Bounce report {when(report.since)} to {when(report.until)} UTC"
    return _template().render(
        title=title,
        period=f"{_day(report.since, report.until)} to {_day(report.until, report.until)}",
        summary=summary_line(report),
        chart=_chart(report) if report.rows else None,
        legend=[(type_color(t), type_label(t)) for t in report.bounce_types],
        types=[(type_label(t), t, report.totals.by_type[t]) for t in report.bounce_types],
        totals=report.totals,
        groups=_groups(report),
        has_rows=bool(report.rows),
    )


# --- contacts, in a person's words ------------------------------------------------------------


@dataclass(frozen=True)
class _Contact:
    contact: str
    emails: list[str]
    bounces: list[str]
    did: list[str]
    tags: list[str]
    status: str
    outcome: str
    todo: str


def _groups(report: Report) -> list[tuple[str, list[_Contact]]]:
    """Every group in a fixed order, empty ones included so the reader sees "none"."""
    grouped: dict[Group, list[_Contact]] = {group: [] for group in Group}
    for row in report.rows:
        grouped[row_group(row)].append(_contact(row, report.until))
    return [(group.value.capitalize(), rows) for group, rows in grouped.items()]


def _contact(row: ReportRow, until: datetime) -> _Contact:
    first, last = _day(row.first_bounce_at, until), _day(row.last_bounce_at, until)
    span = first if first == last else f"{first} to {last}"
    ordered = sorted(row.bounces.items(), key=lambda item: type_order(item[0]))
    did = [] if row.action == "none" else [f"{_action(row.action)} {_day(row.action_at, until)}"]
    if row.action == "none" and row.action_outcome != "none":
        did.append(row.action_outcome)
    if row.planned_action:
        did.append(f"{_action(row.planned_action)} (planned, dry run)")
    tags = [*row.tags, *(f"{tag} (planned)" for tag in row.planned_tags)]
    return _Contact(
        contact=row.contact_id or "(no contact found)",
        emails=row.emails,
        bounces=[f"{type_label(t)} x{n}" for t, n in ordered] + [span],
        did=did or ([] if tags else ["Nothing yet"]),
        tags=tags,
        status=row.status,
        outcome="" if row.outcome in (None, row.status) else row.outcome,
        todo=left_to_do(row),
    )


def _action(action: str) -> str:
    return {"blank_email": "Removed the address", "opt_out": "Opted the address out"}.get(
        action, action
    )


def _day(value: datetime | None, until: datetime) -> str:
    """``9 Mar``, with the year only when it is not the report's year (UTC)."""
    if value is None:
        return ""
    day = value.astimezone(UTC).date()
    return _short(day, with_year=day.year != until.astimezone(UTC).year)


def _short(day: date, *, with_year: bool = False) -> str:
    text = f"{day.day} {day:%b}"
    return f"{text} {day.year}" if with_year else text


# --- the chart --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bar:
    type: str
    day: str
    count: int
    x: str
    y: str
    width: str
    height: str
    fill: str
    label: str


@dataclass(frozen=True)
class _Tick:
    x: str
    label: str


@dataclass(frozen=True)
class _Chart:
    width: int
    height: int
    left: int
    top: int
    base: int
    right: int
    peak: int
    bars: list[_Bar]
    ticks: list[_Tick]


def _chart(report: Report) -> _Chart:
    """Stacked bars, one per day, a segment per bounce type; each bar carries its own title."""
    plot_h = _HEIGHT - _BOTTOM - _TOP
    days = report.daily
    slot = (_WIDTH - _LEFT - 10) / max(len(days), 1)
    peak = max((sum(d.counts.values()) for d in days), default=0) or 1
    every = max(1, len(days) // 10)
    bars: list[_Bar] = []
    ticks: list[_Tick] = []
    for index, day in enumerate(days):
        x = _LEFT + index * slot
        bars += _day_bars(day, x, slot, _TOP + plot_h, plot_h / peak)
        if index % every == 0:
            ticks.append(_Tick(f"{x + slot / 2:.1f}", _short(day.day)))
    return _Chart(_WIDTH, _HEIGHT, _LEFT, _TOP, _TOP + plot_h, _WIDTH - 10, peak, bars, ticks)


def _day_bars(day: DayCounts, x: float, slot: float, base: float, scale: float) -> list[_Bar]:
    bars = []
    y = base
    for bounce_type in sorted(day.counts, key=type_order):
        count = day.counts[bounce_type]
        h = count * scale
        y -= h
        bars.append(
            _Bar(
                type=bounce_type,
                day=day.day.isoformat(),
                count=count,
                x=f"{x + slot * 0.1:.1f}",
                y=f"{y:.1f}",
                width=f"{slot * 0.8:.1f}",
                height=f"{h:.1f}",
                fill=type_color(bounce_type),
                label=f"{_short(day.day)}: {type_label(bounce_type)} {count}",
            )
        )
    return bars
