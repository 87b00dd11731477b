"""The report as JSON: a stable, documented shape with every field."""

from __future__ import annotations

import json

from connector import report as rpt
from tests.report.data import NOW


async def test_json_is_stable_and_documented(report: rpt.Report) -> None:
    text = rpt.render_json(report)
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert set(data) == {"version", "period", "rows", "totals", "daily", "incidents"}
    assert data["incidents"] == []
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
        "action_outcome",
        "outcomes",
        "name",
        "address",
        "incident",
    }
    assert rpt.render_json(report) == text
