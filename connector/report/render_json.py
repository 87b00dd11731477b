"""The report as JSON, for scripts: every field, a documented and versioned shape.

Shape (``version`` 1; keys sorted, times ISO 8601 in UTC, dates ``YYYY-MM-DD``)::

    {"version": 1,
     "period": {"since": TIME, "until": TIME},
     "rows": [{"contact_id": STR|null, "emails": [STR], "total": INT,
               "bounces": {TYPE: INT}, "first_bounce_at": TIME, "last_bounce_at": TIME,
               "status": EVENT_STATUS, "outcome": STR|null,
               "action": "blank_email"|"opt_out"|"none", "action_at": TIME|null,
               "planned_action": "blank_email"|"opt_out"|null,
               "tags": [STR], "planned_tags": ["+TAG"|"-TAG"],
               "action_outcome": STR, "outcomes": {"KIND OUTCOME (REASON)": INT},
               "name": STR|null, "address": STR|null,
               "incident": STR|null}],
     "totals": {"contacts": INT, "bounces": INT, "by_type": {TYPE: INT},
                "by_action": {"blank_email": INT, "opt_out": INT, "none": INT},
                "planned_by_action": {"blank_email": INT, "opt_out": INT},
                "by_outcome": {"KIND OUTCOME (REASON)": INT}},
     "daily": [{"date": DATE, "counts": {TYPE: INT}}],
     "incidents": [{"domain": STR, "open": BOOL, "opened_at": TIME, "closed_at": TIME|null,
                    "bounces": INT, "peak": INT}]}

``incident`` and ``incidents`` (DESIGN 7a) were added later; scripts that ignore unknown keys
read the shape as before.

``TYPE`` is a bounce-type slug (DESIGN.md section 3). ``planned_*`` come from dry runs: they are
what the connector would have done, and are never counted as done.
"""

from __future__ import annotations

import json
from typing import Any

from connector.report.build import Report, ReportRow, iso, row_incident

REPORT_VERSION = 1


def report_dict(report: Report) -> dict[str, Any]:
    """The documented shape (see the module docstring)."""
    totals = report.totals
    return {
        "version": REPORT_VERSION,
        "period": {"since": iso(report.since), "until": iso(report.until)},
        "rows": [{**_row_dict(row), "incident": row_incident(report, row)} for row in report.rows],
        "totals": {
            "contacts": totals.contacts,
            "bounces": totals.bounces,
            "by_type": totals.by_type,
            "by_action": totals.by_action,
            "planned_by_action": totals.planned_by_action,
            "by_outcome": totals.by_outcome,
        },
        "daily": [{"date": d.day.isoformat(), "counts": d.counts} for d in report.daily],
        "incidents": [
            {
                "domain": i.domain,
                "open": i.closed_at is None,
                "opened_at": iso(i.opened_at),
                "closed_at": iso(i.closed_at),
                "bounces": i.bounces,
                "peak": i.peak,
            }
            for i in report.incidents
        ],
    }


def _row_dict(row: ReportRow) -> dict[str, Any]:
    return {
        "contact_id": row.contact_id,
        "emails": row.emails,
        "total": row.total,
        "bounces": row.bounces,
        "first_bounce_at": iso(row.first_bounce_at),
        "last_bounce_at": iso(row.last_bounce_at),
        "status": row.status,
        "outcome": row.outcome,
        "action": row.action,
        "action_at": iso(row.action_at),
        "planned_action": row.planned_action,
        "tags": row.tags,
        "planned_tags": row.planned_tags,
        "action_outcome": row.action_outcome,
        "outcomes": row.outcomes,
        "name": row.name,
        "address": row.address,
    }


def render_json(report: Report) -> str:
    """Sorted keys and a trailing newline, so two runs over the same data diff cleanly."""
    return json.dumps(report_dict(report), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
