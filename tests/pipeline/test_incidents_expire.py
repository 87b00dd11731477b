"""DESIGN 7a against the sandbox: ``[incidents]`` and a rule's ``expire``, on both backends.

The incident test is issue 15's must-show: 50 spam-detected blocks at one domain inside the
window, 5 hard bounces there and 5 elsewhere; the incident opens once (one alert in the
outbox), no blocked contact loses its address, the hard bounces elsewhere are remediated, and
the report shows the incident. Two workers on two store connections racing over one domain
open it exactly once. Expire: the due-check re-opts-in an address still as the connector left
it, once, and records Keap's refusal for a bounce status.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from connector import mail
from connector import report as rpt
from connector.alerts import AlertSender, EmailChannel
from connector.metrics import Metrics
from connector.pipeline.outcome import Outcome, SkipReason, StepKind, records
from connector.policy import Policy, parse_policy
from connector.store import open_store
from connector.undo import undo
from connector.worker import Worker, WorkerOptions
from tests.fixtures_pipeline import Harness
from tests.smtp_server import smtp_server

INCIDENT_POLICY = """
[[rule]]
bounce = "hard_bounce"
action = "opt_out"
note = true

[[rule]]
bounce = "mail_block_spam_detected"
add_tags = ["Mail Block - Sender Review"]

[incidents]
bounce = ["mail_block_spam_detected", "hard_bounce"]
threshold = 10
within = "1h"
"""


def incident_policy() -> Policy:
    return parse_policy(INCIDENT_POLICY, "incidents")


async def test_a_wave_of_blocks_opens_one_incident_and_holds_destructive_steps(
    harness: Harness,
) -> None:
    state = harness.sandbox.state
    blocked = [harness.contact(f"b{i}@blocked.example") for i in range(50)]
    there = [harness.contact(f"h{i}@blocked.example") for i in range(5)]
    elsewhere = [harness.contact(f"h{i}@fine.example") for i in range(5)]
    for i, contact in enumerate(blocked):
        await harness.event(contact, "mail_block_spam_detected", f"b{i}@blocked.example")
    worker = harness.worker(incident_policy(), concurrency=8)
    await worker.drain()
    hard = [
        await harness.event(c, "hard_bounce", f"h{i}@blocked.example") for i, c in enumerate(there)
    ]
    fine = [
        await harness.event(c, "hard_bounce", f"h{i}@fine.example") for i, c in enumerate(elsewhere)
    ]
    await worker.drain()

    incidents = await harness.store.list_incidents(datetime.now(UTC) - timedelta(days=1))
    assert [(i.domain, i.open) for i in incidents] == [("blocked.example", True)]
    assert incidents[0].bounces == 55
    alerts = await harness.store.list_alerts()
    assert [(a.kind, a.subject) for a in alerts] == [("incident_opened", "blocked.example")]
    with smtp_server() as smtp:
        server = mail.MailServer("127.0.0.1", smtp.port, "none", "connector@example.com")
        sender = AlertSender(harness.store, [EmailChannel(server, ["admin@example.com"])])
        assert await sender.deliver_due() == 1
        assert await sender.deliver_due() == 0, "delivered once"
    (received,) = smtp.received
    assert received.recipients == ["admin@example.com"]
    assert "blocked.example" in str(received.message["Subject"])
    statuses = [state.address(f"b{i}@blocked.example") for i in range(50)]
    assert all(a is not None and a.status == "SINGLE_OPT_IN" for a in statuses)
    for i, event_id in enumerate(hard):
        assert harness.status(f"h{i}@blocked.example") == "SINGLE_OPT_IN"
        (opt_out,) = [
            r for r in records(await harness.store.audit_for_event(event_id)) if r.kind.destructive
        ]
        assert opt_out.outcome is Outcome.SKIPPED
        assert opt_out.reason is not None
        assert opt_out.reason.code is SkipReason.INCIDENT_OPEN
        assert str(opt_out.reason) == "incident open at blocked.example"
    for i, event_id in enumerate(fine):
        assert harness.status(f"h{i}@fine.example") == "MANUAL"
        kinds = {r.kind: r.outcome for r in records(await harness.store.audit_for_event(event_id))}
        assert kinds[StepKind.OPT_OUT] is Outcome.DONE

    built = await rpt.build_report(
        harness.store, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)
    )
    assert [i.domain for i in built.incidents] == ["blocked.example"]
    assert "Incident open at blocked.example" in rpt.render_html(built)
    assert '"domain": "blocked.example"' in rpt.render_json(built)
    assert "Incident open at blocked.example" in rpt.render_csv(built)


async def test_two_workers_on_two_connections_open_an_incident_once(
    harness: Harness, database_url: str
) -> None:
    other = await open_store(database_url)
    try:
        for i in range(40):
            contact = harness.contact(f"r{i}@race.example")
            await harness.event(contact, "mail_block_spam_detected", f"r{i}@race.example")
        policy = incident_policy()
        one = harness.worker(policy, concurrency=4)
        two = Worker(other, harness.client, policy, Metrics(), WorkerOptions(concurrency=4))
        await asyncio.gather(one.drain(), two.drain())
        incidents = await harness.store.list_incidents(datetime.now(UTC) - timedelta(days=1))
        assert [i.domain for i in incidents] == ["race.example"]
        assert [a.subject for a in await other.list_alerts()] == ["race.example"]
    finally:
        await other.close()


async def test_an_incident_closes_after_a_window_below_its_threshold(harness: Harness) -> None:
    for i in range(12):
        contact = harness.contact(f"q{i}@quiet.example")
        await harness.event(contact, "mail_block_spam_detected", f"q{i}@quiet.example")
    await harness.worker(incident_policy(), concurrency=4).drain()
    since = datetime.now(UTC) - timedelta(days=1)
    assert [(i.domain, i.open) for i in await harness.store.list_incidents(since)] == [
        ("quiet.example", True)
    ]
    soon = datetime.now(UTC) + timedelta(minutes=30)
    early = Worker(
        harness.store,
        harness.client,
        incident_policy(),
        Metrics(),
        WorkerOptions(),
        clock=lambda: soon,
    )
    await early.due_checks(force=True)
    assert [i.open for i in await harness.store.list_incidents(since)] == [True], "still inside"
    later = datetime.now(UTC) + timedelta(hours=2)
    quiet = Worker(
        harness.store,
        harness.client,
        incident_policy(),
        Metrics(),
        WorkerOptions(),
        clock=lambda: later,
    )
    await quiet.due_checks(force=True)
    assert [(i.domain, i.open) for i in await harness.store.list_incidents(since)] == [
        ("quiet.example", False)
    ]


def at(harness: Harness, policy: Policy, ahead: timedelta) -> Worker:
    """A worker whose clock runs ``ahead`` of now, for what falls due later."""
    moment = datetime.now(UTC) + ahead
    return Worker(
        harness.store, harness.client, policy, Metrics(), WorkerOptions(), clock=lambda: moment
    )


def expiring(extra: str = "") -> Policy:
    return parse_policy(
        f'[[rule]]\nbounce = "hard_bounce"\naction = "opt_out"\nexpire = "1d"\n{extra}', "expire"
    )


async def test_an_expired_opt_out_is_opted_in_again_once_and_can_be_undone(
    harness: Harness,
) -> None:
    contact = harness.contact("e@x.com")
    event_id = await harness.event(contact, "hard_bounce", "e@x.com")
    await harness.worker(expiring()).drain()
    assert harness.status("e@x.com") == "MANUAL"

    early = at(harness, expiring(), timedelta(hours=23))
    await early.due_checks(force=True)
    assert harness.status("e@x.com") == "MANUAL"

    later = at(harness, expiring(), timedelta(days=2))
    await later.due_checks(force=True)
    await later.due_checks(force=True)
    assert harness.status("e@x.com") == "SINGLE_OPT_IN"
    assert "Bounce Retest" in harness.tags_of(contact)
    assert sum("expired" in n for n in harness.notes_of(contact)) == 1
    steps = records(await harness.store.audit_for_event(event_id))
    (reopt,) = [s for s in steps if s.kind is StepKind.REOPT_IN]
    assert reopt.outcome is Outcome.DONE
    assert reopt.describe().startswith("re-opt-in e")

    assert reopt.audit_id is not None
    await undo(harness.store, harness.client, reopt.audit_id)
    assert harness.status("e@x.com") == "MANUAL"


async def test_keap_refusing_opt_in_from_a_bounce_status_is_a_skip(harness: Harness) -> None:
    contact = harness.contact("r@x.com")
    event_id = await harness.event(contact, "hard_bounce", "r@x.com")
    await harness.worker(expiring()).drain()
    harness.sandbox.state.set_status("r@x.com", "HARD_BOUNCE")
    later = at(harness, expiring(), timedelta(days=2))
    await later.due_checks(force=True)
    assert harness.status("r@x.com") == "HARD_BOUNCE"
    assert "Bounce Retest" not in harness.tags_of(contact)
    (reopt,) = [
        s
        for s in records(await harness.store.audit_for_event(event_id))
        if s.kind is StepKind.REOPT_IN
    ]
    assert reopt.outcome is Outcome.SKIPPED
    assert str(reopt.reason) == "Keap refuses opt-in from HARD_BOUNCE"
