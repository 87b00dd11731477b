"""Alerts (DESIGN 7a) delivered for real: a real SMTP server (aiosmtpd) and a real HTTP server on
127.0.0.1, the worker against the sandbox, on both store backends.

Clocks are fake where a window or a backoff matters (``Now``); waiting for another task to reach
a state is bounded polling, never a sleep standing in for the state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connector import mail
from connector.alerts import (
    Alert,
    AlertKind,
    AlertSender,
    Channel,
    EmailChannel,
    SenderOptions,
    WebhookChannel,
    raise_alert,
)
from connector.config import load_settings
from connector.keap.auth import ApiKeyAuth
from connector.keap.client import KeapClient
from connector.keap.retry import RateLimiter
from connector.metrics import Metrics
from connector.pipeline.outcome import from_audit
from connector.policy import parse_policy
from connector.store import EventStatus, NewEvent, Store
from connector.worker import Worker, WorkerOptions
from tests.fixtures_pipeline import Harness
from tests.fixtures_store import FakeClock
from tests.smtp_server import free_port, smtp_server

SENDER = "connector@example.com"
ADMIN = "admin@example.com"
T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


class Now:
    """The sender's clock, moved by hand."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


# --- a real HTTP server for the webhook channel ------------------------------------------------


@dataclass
class Hook:
    """Records every POST; answers ``status``; holds the answer while ``hold`` is clear."""

    port: int
    status: int = 200
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    waiting: int = 0

    def url(self, path: str = "/hooks/alerts") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def hook_server() -> Iterator[Hook]:
    hook = Hook(free_port())
    hook.hold.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.posts.append(json.loads(body))
            hook.paths.append(self.path)
            hook.waiting += 1
            hook.hold.wait(timeout=30)
            hook.waiting -= 1
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.hold.set()
        server.shutdown()
        server.server_close()


def email_channel(port: int) -> EmailChannel:
    return EmailChannel(mail.MailServer("127.0.0.1", port, "none", SENDER), [ADMIN])


def sender(store: Store, channels: list[Channel], now: Now) -> AlertSender:
    options = SenderOptions(base_backoff=timedelta(minutes=1), max_backoff=timedelta(minutes=1))
    return AlertSender(store, channels, clock=now, owner="test-sender", options=options)


def dead(event_id: int) -> Alert:
    return Alert(AlertKind.DEAD_EVENT, f"event {event_id}", f"event {event_id} died", {"x": "1"})


async def until(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Bounded polling for another task's state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# --- delivery -----------------------------------------------------------------------------------


async def test_an_alert_reaches_the_mailbox_and_the_webhook(store: Store) -> None:
    now = Now()
    with smtp_server() as smtp, hook_server() as hook:
        assert await raise_alert(store, dead(41), now())
        alerts = sender(store, [email_channel(smtp.port), WebhookChannel(hook.url())], now)
        assert await alerts.deliver_due() == 1
        assert await alerts.deliver_due() == 0  # nothing left: not sent twice

    (got,) = smtp.received
    assert got.sender == SENDER
    assert got.recipients == [ADMIN]
    assert got.message["Subject"] == "[keap-bounce-connector] An event failed for good: event 41"
    body = got.message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "event 41 died" in text
    assert "x: 1" in text
    assert "kind: dead_event" in text

    (posted,) = hook.posts
    assert posted["kind"] == "dead_event"
    assert posted["subject"] == "event 41"
    assert posted["text"] == "*An event failed for good*: event 41\nevent 41 died"
    assert posted["details"] == {"x": "1"}
    assert posted["raised_at"] == "2027-01-04T09:00:00+00:00"

    (record,) = await store.list_alerts()
    assert record.done_at == T0
    assert set(record.delivered) == {"email", "webhook"}
    assert record.attempts == 1


async def test_outside_text_cannot_ping_a_channel_or_forge_a_header(store: Store) -> None:
    now = Now()
    sneaky = Alert(AlertKind.RULE_NOTIFY, "x\r\nBcc: evil@example.com <!channel>", "a & <b>")
    with smtp_server() as smtp, hook_server() as hook:
        await raise_alert(store, sneaky, now())
        alerts = sender(store, [email_channel(smtp.port), WebhookChannel(hook.url())], now)
        assert await alerts.deliver_due() == 1
    (got,) = smtp.received
    assert got.recipients == [ADMIN]
    assert "Bcc" not in got.message
    assert "&lt;!channel&gt;" in hook.posts[0]["text"]
    assert "a &amp; &lt;b&gt;" in hook.posts[0]["text"]
    assert "<!channel>" not in hook.posts[0]["text"]


async def test_smtp_down_when_a_dead_event_alert_is_raised_then_back_arrives_once(
    harness: Harness,
) -> None:
    """The Must-show: the worker marks an event dead while the SMTP server is down; the alert
    waits in the outbox, and once the server is back it arrives exactly once."""
    cid = harness.contact("gone@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(outage_seconds=3600)
    harness.quick_retries()
    assert (await harness.worker(max_attempts=1).drain()).dead == 1

    port = free_port()  # nothing listens here yet: the SMTP server is down
    now = Now(datetime.now(UTC))  # the worker raised it at the wall clock's time
    alerts = sender(harness.store, [email_channel(port)], now)
    assert await alerts.deliver_due() == 0
    (waiting,) = await harness.store.list_alerts()
    assert waiting.kind == "dead_event"
    assert waiting.subject == f"event {event_id}"
    assert waiting.done_at is None
    assert waiting.last_error is not None
    assert "refused the connection" in waiting.last_error
    assert await alerts.deliver_due() == 0, "not due again before its backoff"

    with smtp_server(port=port) as smtp:
        now.advance(timedelta(minutes=1))
        assert await alerts.deliver_due() == 1
        for _ in range(3):
            now.advance(timedelta(hours=1))
            assert await alerts.deliver_due() == 0
    (got,) = smtp.received
    assert f"event {event_id}" in got.message["Subject"]
    (record,) = await harness.store.list_alerts()
    assert record.attempts == 2
    assert set(record.delivered) == {"email"}


async def test_a_delivered_email_is_not_resent_when_the_webhook_fails(store: Store) -> None:
    now = Now()
    with smtp_server() as smtp, hook_server() as hook:
        hook.status = 500
        await raise_alert(store, dead(1), now())
        alerts = sender(store, [email_channel(smtp.port), WebhookChannel(hook.url())], now)
        assert await alerts.deliver_due() == 0
        (record,) = await store.list_alerts()
        assert set(record.delivered) == {"email"}
        assert record.last_error is not None
        assert record.last_error.startswith("webhook: the alert webhook http://127.0.0.1:")
        assert "answered 500" in record.last_error

        hook.status = 200
        now.advance(timedelta(minutes=1))
        assert await alerts.deliver_due() == 1
    assert len(smtp.received) == 1
    assert len(hook.posts) == 2
    (record,) = await store.list_alerts()
    assert set(record.delivered) == {"email", "webhook"}
    assert record.done_at == now()


async def test_delivery_errors_and_logs_name_no_secret(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    secret_url = f"http://127.0.0.1:{free_port()}/services/T0/B0/PATHSECRET?token=QUERYSECRET"
    now = Now()
    await raise_alert(store, dead(1), now())
    alerts = sender(store, [WebhookChannel(secret_url)], now)
    with caplog.at_level(logging.DEBUG):
        await alerts.tick()
    (record,) = await store.list_alerts()
    assert record.last_error is not None
    assert "cannot reach the alert webhook http://127.0.0.1:" in record.last_error
    for text in (record.last_error, caplog.text):
        assert "PATHSECRET" not in text
        assert "QUERYSECRET" not in text


async def test_a_hanging_channel_never_blocks_remediation(harness: Harness) -> None:
    """The sender is stuck inside a delivery (the webhook holds its answer) while the worker
    remediates an event; afterwards the held alert is delivered."""
    with hook_server() as hook:
        hook.hold.clear()
        await raise_alert(harness.store, dead(99), datetime.now(UTC))
        alerts = AlertSender(harness.store, [WebhookChannel(hook.url(), timeout=60)])
        stop = asyncio.Event()
        running = asyncio.create_task(alerts.run(stop))
        try:
            await until(lambda: hook.waiting == 1, "the sender to be inside a delivery")
            cid = harness.contact("stuck@example.com")
            event_id = await harness.event(cid, "unsubscribe_request", "stuck@example.com")
            assert (await harness.worker().drain()).done == 1
            assert hook.waiting == 1, "the delivery is still held"
            event = await harness.store.get_event(event_id)
            assert event is not None
            assert event.status is EventStatus.DONE
            assert harness.status("stuck@example.com") != "SINGLE_OPT_IN"
        finally:
            hook.hold.set()
            stop.set()
            await asyncio.wait_for(running, 30)
    (record,) = await harness.store.list_alerts()
    assert record.done_at is not None


async def test_a_failing_channel_raises_nothing_into_the_worker(harness: Harness) -> None:
    """A dead event's alert with every channel failing: the worker's outcome is unchanged."""
    cid = harness.contact("fails@example.com")
    await harness.event(cid, "unsubscribe_request")
    harness.sandbox.set_faults(outage_seconds=3600)
    harness.quick_retries()
    later = Now(datetime.now(UTC) + timedelta(minutes=1))  # after the worker raises the alert
    alerts = sender(harness.store, [email_channel(free_port())], later)
    stop = asyncio.Event()
    running = asyncio.create_task(alerts.run(stop))
    try:
        assert (await harness.worker(max_attempts=1).drain()).dead == 1
        await alerts.tick()
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    assert running.exception() is None
    (record,) = await harness.store.list_alerts()
    assert record.done_at is None
    assert record.attempts >= 1


# --- kinds raised -------------------------------------------------------------------------------


async def test_backlog_is_raised_once_when_the_oldest_event_waits_too_long(
    store: Store, clock: FakeClock
) -> None:
    now = Now()
    alerts = sender(store, [], now)
    await store.add_event(NewEvent("webhook", "hard_bounce", "1", None, None, "k1", "{}"), None)
    clock.advance(15 * 60)
    assert not await alerts.check_backlog()  # exactly the limit: not yet
    clock.advance(1)
    assert await alerts.check_backlog()
    now.advance(timedelta(minutes=30))
    assert not await alerts.check_backlog(), "once an hour"
    (record,) = await store.list_alerts()
    assert record.kind == "backlog"
    assert record.details["waiting"] == "1"
    assert "15 minutes" in record.text


async def test_reauth_required_is_raised_once_an_hour(harness: Harness) -> None:
    """Keap refuses the key: the worker releases the event on every try, one alert an hour."""
    env = {k.lower(): v for k, v in harness.sandbox.env().items()}
    settings = load_settings(**{**env, "keap_api_key": "KeapAK-not-the-sandbox-key"})
    assert settings.keap_api_key is not None
    refused = KeapClient(settings, ApiKeyAuth(settings.keap_api_key), limiter=RateLimiter(1000.0))
    cid = harness.contact("auth@example.com")
    event_id = await harness.event(cid, "unsubscribe_request")
    now = Now(datetime.now(UTC))
    worker = Worker(harness.store, refused, parse_policy(NOTIFY_POLICY), Metrics(),
                    WorkerOptions(), clock=now)  # fmt: skip
    try:
        for _ in range(3):
            assert (await worker.drain()).released == 1
            assert await harness.store.requeue(event_id) == 1  # due now, not after the pause
            now.advance(timedelta(minutes=20))  # past the worker's pause
        now.advance(timedelta(minutes=1))  # 61 minutes after the first: due again
        assert (await worker.drain()).released == 1
    finally:
        await refused.aclose()
    records = await harness.store.list_alerts()
    assert [(r.kind, r.subject) for r in records] == [("reauth_required", "Keap credentials")] * 2
    assert "connector auth login" in records[0].text


# --- notify = true: a step of the plan ------------------------------------------------------------

NOTIFY_POLICY = """
[[rule]]
bounce = "hard_bounce"
when = "at least 1"
action = "opt_out"
notify = true
"""


async def test_a_notify_rule_raises_one_alert_per_address_an_hour(harness: Harness) -> None:
    policy = parse_policy(NOTIFY_POLICY)
    cid = harness.contact("notify@example.com")
    first = await harness.event(cid, "hard_bounce", "notify@example.com")
    assert (await harness.worker(policy).drain()).done == 1
    second = await harness.event(cid, "hard_bounce", "notify@example.com")
    assert (await harness.worker(policy).drain()).done == 1

    steps = [from_audit(e) for e in await harness.store.audit_for_event(first)]
    (notify,) = [s for s in steps if s.kind.value == "notify"]
    assert notify.describe() == "alert for rule 1: done"
    again = [from_audit(e) for e in await harness.store.audit_for_event(second)]
    (repeat,) = [s for s in again if s.kind.value == "notify"]
    assert repeat.describe() == (
        "alert for rule 1: skipped (the same alert was raised within the hour)"
    )
    event = await harness.store.get_event(second)
    assert event is not None
    assert event.outcome is not None
    assert "alert for rule 1: skipped (the same alert was raised within the hour)" in event.outcome

    (record,) = await harness.store.list_alerts()
    assert record.kind == "rule_notify"
    assert record.subject == f"contact {cid} notify@example.com rule 1"
    assert record.details["contact_id"] == str(cid)
    assert record.details["rule"] == "1"
    assert "Ada Lovelace" in record.text
    assert harness.status("notify@example.com") != "SINGLE_OPT_IN"  # the opt-out still ran

    # a re-run of a finished event does not raise again
    assert await harness.store.requeue(first) == 1
    assert (await harness.worker(policy).drain()).done == 1
    assert len(await harness.store.list_alerts()) == 1


async def test_a_notify_step_in_a_dry_run_is_planned_not_raised(harness: Harness) -> None:
    policy = parse_policy(NOTIFY_POLICY)
    cid = harness.contact("dry@example.com")
    event_id = await harness.event(cid, "hard_bounce", "dry@example.com")
    assert (await harness.worker(policy, dry_run=True).drain()).done == 1
    steps = [from_audit(e) for e in await harness.store.audit_for_event(event_id)]
    (notify,) = [s for s in steps if s.kind.value == "notify"]
    assert notify.describe() == "alert for rule 1: planned"
    assert await harness.store.list_alerts() == []
