"""DESIGN 1b: one record of each step, and every output says the same about it.

A hard-bounce ladder on an address Keap already holds as HARD_BOUNCE: the third strike's
opt-out is skipped (Keap keeps the address from mail already), and a fourth bounce in the same
episode writes no second note or task. The Keap note, ``events show``, ``audit``, ``report`` in
every format and ``/metrics`` must all say so in the same words.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from connector.metrics import Metrics
from connector.policy import default_policy, parse_policy
from connector.report import build_report, render_csv, render_html, render_json, render_table
from tests.cli.runner import run
from tests.fixtures_pipeline import Harness

SKIPPED = "skipped (already non-marketable in Keap (HARD_BOUNCE))"
ACTION = f"opt_out {SKIPPED}"
EMAIL = "ada@example.com"


@pytest.fixture
async def ladder(harness: Harness) -> tuple[int, list[int], Metrics]:
    cid = harness.contact(EMAIL, status="HARD_BOUNCE")
    metrics = Metrics()
    worker = harness.worker(default_policy(), metrics=metrics)
    events = []
    for _ in range(4):
        events.append(await harness.event(cid, "hard_bounce", EMAIL))
        assert (await worker.drain()).done == 1
    return cid, events, metrics


async def test_the_note_says_what_happened_and_is_written_once_per_episode(
    harness: Harness, ladder: tuple[int, list[int], Metrics]
) -> None:
    cid, _, _ = ladder
    notes = harness.notes_of(cid)
    assert len(notes) == 3, "strikes 1, 2 and 3 each have their rule's note; the 4th none"
    third = notes[-1]
    assert f"Did not opt out the address {EMAIL} (rule 3): already non-marketable in Keap" in third
    assert "Opted out" not in third
    assert len(harness.sandbox.state.tasks_of(cid)) == 1
    assert harness.status(EMAIL) == "HARD_BOUNCE"


def test_events_and_audit_say_the_same(
    harness: Harness,
    ladder: tuple[int, list[int], Metrics],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, events, _ = ladder
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    for event_id in events[2:]:
        code, out, err = run("events", "show", str(event_id))
        assert code == 0, err
        assert f"opt out a***@example.com: {SKIPPED}" in out
    code, out, _ = run("events", "show", str(events[3]))
    assert "note: skipped (already written for this address and bounce episode)" in out
    code, out, err = run("events", "list")
    assert code == 0, err
    assert out.count("already non-marketable in Keap") == 2
    code, out, err = run("audit")
    assert code == 0, err
    assert out.count(f"opt out a***@example.com: {SKIPPED}") == 2
    assert "Opted out" not in out


async def test_report_in_every_format_and_metrics_say_the_same(
    harness: Harness, ladder: tuple[int, list[int], Metrics]
) -> None:
    _, _, metrics = ladder
    now = datetime.now(UTC) + timedelta(minutes=1)
    report = await build_report(harness.store, now - timedelta(days=1), now)
    (row,) = report.rows
    assert row.action == "none", "nothing was opted out by the connector"
    assert row.action_outcome == ACTION
    assert report.totals.by_outcome[ACTION] == 2
    (data,) = json.loads(render_json(report))["rows"]
    assert data["action_outcome"] == ACTION
    (line,) = csv.DictReader(io.StringIO(render_csv(report)))
    assert line["action_outcome"] == ACTION
    assert ACTION in render_html(report)
    terminal = Console(width=400, record=True, file=io.StringIO())
    terminal.print(render_table(report))
    assert ACTION in " ".join(terminal.export_text().split())
    text = metrics.render().decode()
    wanted = (
        'connector_steps_total{dry_run="false",kind="opt_out",'
        'outcome="skipped",reason="already_non_marketable"} 2.0'
    )
    assert wanted in text
    episode = 'kind="task",outcome="skipped",reason="same_episode"} 1.0'
    assert episode in text


async def test_bounces_of_one_contact_processed_together_write_one_note_and_task(
    harness: Harness,
) -> None:
    """Events of one contact claimed in one batch are planned one after the other, so the
    second sees the first's note and task (one per address and bounce episode)."""
    cid = harness.contact(EMAIL)
    policy = parse_policy(
        '[[rule]]\nbounce = ["hard_bounce", "general_bounce", "transient_bounce"]\n'
        'note = true\ntask = "Check {email}"\n',
        "episode",
    )
    for bounce in ("hard_bounce", "general_bounce", "transient_bounce"):
        await harness.event(cid, bounce, EMAIL)
    result = await harness.worker(policy, concurrency=3).drain()
    assert result.done == 3
    assert len(harness.notes_of(cid)) == 1
    assert len(harness.sandbox.state.tasks_of(cid)) == 1
