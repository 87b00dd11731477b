"""The report as one self-contained HTML page for a person: a chart, totals, and the contacts
grouped by what they need (templates/report.html.j2).

The page comes from a Jinja2 template with autoescape on, so every value from outside (names,
addresses, tags, outcomes) is text, never markup; control characters, which would make the page
invalid, are replaced (U+FFFD) before escaping. Everything is inline (no scripts, fonts, images
or style sheets), so the page can be emailed as is; the only links are to contacts in Keap, when
``CONNECTOR_CONTACT_URL`` is set, and only ever ``http(s)``. The chart's geometry is computed
here and only drawn by the template. The page fits 1280 px without scrolling sideways and
prints cleanly (``tests/report/test_browser.py`` checks it in headless Chromium).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from connector.report.build import (
    DayCounts,
    Group,
    Report,
    ReportRow,
    bounce_history,
    contact_link,
    done_lines,
    left_to_do,
    period_text,
    row_group,
    short_day,
    summary_line,
    type_label,
    type_order,
)

if TYPE_CHECKING:
    import jinja2

# One clearly different colour per bounce type, in Keap's order (a week shows a few at most).
_PALETTE = (
    "#d62728", "#ff7f0e", "#bcbd22", "#8c564b", "#1f77b4", "#17becf", "#aec7e8", "#393b79",
    "#7f7f7f", "#c7c7c7", "#e377c2", "#f7b6d2", "#9467bd", "#5b2c6f", "#c5b0d5", "#e7ba52",
    "#98df8a", "#637939",
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP, _RIGHT = 1100, 250, 44, 36, 18, 10
# Up to two weeks every day is labelled with its weekday; longer periods thin the labels.
_DAILY_LABELS = 14


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


def render_html(report: Report, *, contact_url: str | None = None) -> str:
    """One page with everything inline to email as is; ``contact_url`` links each contact."""
    period = period_text(report)
    groups = _groups(report, contact_url)
    return _template().render(
        title=f"Bounce report: {period}",
        period=period,
        summary=summary_line(report),
        headline=f"{report.totals.bounces} bounce(s) from {report.totals.contacts} contact(s)",
        counts=[(name, anchor, len(rows)) for name, anchor, rows in groups],
        chart=_chart(report) if report.rows else None,
        legend=[(type_color(t), type_label(t)) for t in report.bounce_types],
        types=[(type_label(t), report.totals.by_type[t]) for t in report.bounce_types],
        totals=report.totals,
        groups=groups,
        has_rows=bool(report.rows),
        incidents=[(i.closed_at is None, i.text()) for i in report.incidents],
        generated=f"{report.until:%Y-%m-%d %H:%M} UTC",
    )


# --- contacts, in a person's words ------------------------------------------------------------


@dataclass(frozen=True)
class _Contact:
    name: str
    contact_id: str
    link: str | None
    address: str
    other_emails: list[str]
    history: list[str]
    did: list[str]
    tags: list[str]
    status: str
    outcome: str
    todo: str


def _groups(report: Report, contact_url: str | None) -> list[tuple[str, str, list[_Contact]]]:
    """Every group in a fixed order, empty ones included so the reader sees "none"."""
    grouped: dict[Group, list[_Contact]] = {group: [] for group in Group}
    for row in report.rows:
        grouped[row_group(row)].append(_contact(row, report.until, contact_url))
    return [
        (group.value.capitalize(), group.name.lower().replace("_", "-"), rows)
        for group, rows in grouped.items()
    ]


def _contact(row: ReportRow, until: datetime, contact_url: str | None) -> _Contact:
    address = row.address or (row.emails[0] if row.emails else "")
    others = [e for e in row.emails if e.lower() != address.lower()]
    tags = [*row.tags, *(f"{tag} (planned)" for tag in row.planned_tags)]
    did = done_lines(row, until)
    return _Contact(
        name=row.name or ("(no name recorded)" if row.contact_id else "(no contact found)"),
        contact_id=row.contact_id or "",
        link=contact_link(contact_url, row.contact_id),
        address=address,
        other_emails=others,
        history=bounce_history(row, until),
        did=did or ([] if tags else ["Nothing yet"]),
        tags=tags,
        status=row.status,
        outcome="" if row.outcome in (None, row.status) else row.outcome,
        todo=left_to_do(row),
    )


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
class _Text:
    x: str
    y: str
    label: str


@dataclass(frozen=True)
class _Chart:
    width: int
    height: int
    left: int
    base: int
    right: int
    bars: list[_Bar]
    days: list[_Text]  # a label under each (or every few) day
    totals: list[_Text]  # the day's total above its bar
    grid: list[_Text]  # horizontal lines with their count on the axis


def _chart(report: Report) -> _Chart:
    """Stacked bars, one per day, a segment per bounce type; each bar carries its own title."""
    plot_h = _HEIGHT - _BOTTOM - _TOP
    base = _TOP + plot_h
    days = report.daily
    slot = (_WIDTH - _LEFT - _RIGHT) / max(len(days), 1)
    peak = _nice(max((sum(d.counts.values()) for d in days), default=0))
    scale = plot_h / peak
    every = 1 if len(days) <= _DAILY_LABELS else -(-len(days) // _DAILY_LABELS)
    bars: list[_Bar] = []
    labels: list[_Text] = []
    totals: list[_Text] = []
    for index, day in enumerate(days):
        x = _LEFT + index * slot
        middle = f"{x + slot / 2:.1f}"
        bars += _day_bars(day, x, slot, base, scale)
        total = sum(day.counts.values())
        if total and len(days) <= 2 * _DAILY_LABELS:
            totals.append(_Text(middle, f"{base - total * scale - 4:.1f}", str(total)))
        if index % every == 0:
            text = f"{day.day:%a} {short_day(day.day)}" if every == 1 else short_day(day.day)
            labels.append(_Text(middle, f"{base + 16}", text))
    grid = [
        _Text(f"{_LEFT}", f"{base - value * scale:.1f}", str(value)) for value in _grid_values(peak)
    ]
    return _Chart(_WIDTH, _HEIGHT, _LEFT, base, _WIDTH - _RIGHT, bars, labels, totals, grid)


def _nice(peak: int) -> int:
    """The axis top: the peak rounded up to 1, 2 or 5 times a power of ten (at least 4)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor * 4 >= peak:
                return step * factor * 4
        step *= 10


def _grid_values(top: int) -> list[int]:
    return [top * n // 4 for n in range(5)]


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
                x=f"{x + slot * 0.15:.1f}",
                y=f"{y:.1f}",
                width=f"{slot * 0.7:.1f}",
                height=f"{h:.1f}",
                fill=type_color(bounce_type),
                label=f"{short_day(day.day)}: {type_label(bounce_type)} {count}",
            )
        )
    return bars
