"""Alerts that reach a person (DESIGN 7a): raised into the store's outbox, then delivered.

Raising and sending are two halves that never wait on each other:

* :func:`raise_alert` stores an :class:`Alert` in the outbox, unless the same kind and subject
  was raised less than an hour before (``DEDUPE_WINDOW``). The store decides that in one
  transaction, so several replicas raising the same alert store it once. Nothing is sent here:
  the caller (the worker, the executor's ``notify`` step, the incident check) pays one write.
* :class:`AlertSender` runs beside the worker in ``serve`` and ``worker``: it claims due alerts,
  hands each to every configured :class:`Channel` (an email to ``CONNECTOR_ALERT_EMAIL`` over the
  ``CONNECTOR_SMTP_*`` server, a JSON POST to ``CONNECTOR_ALERT_WEBHOOK_URL``), records per
  channel what took it, and retries the rest with backoff. A channel that delivered is not asked
  again when another fails. It also raises ``backlog`` when the oldest waiting event is older
  than ``BACKLOG_AFTER``. A failing channel is logged and retried; nothing is raised into the
  worker, and no remediation waits on a delivery.

What a delivery failure says is one line naming the channel and the server's host, never the
SMTP password nor the webhook URL's path or query (a Slack URL's path is its secret).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from connector.errors import ConfigError, ConnectorError
from connector.logs import scrub
from connector.store.base import AlertRecord, NewAlert, Store
from connector.text import plain

if TYPE_CHECKING:
    import httpx

    from connector.config import Settings
    from connector.mail import MailServer

__all__ = [
    "BACKLOG_AFTER",
    "DEDUPE_WINDOW",
    "Alert",
    "AlertDeliveryError",
    "AlertKind",
    "AlertSender",
    "Channel",
    "EmailChannel",
    "SenderOptions",
    "WebhookChannel",
    "channels_from_settings",
    "configured_channel_names",
    "raise_alert",
    "send_test_alert",
]

log = logging.getLogger("connector.alerts")

DEDUPE_WINDOW = timedelta(hours=1)
BACKLOG_AFTER = timedelta(minutes=15)
PRODUCT = "keap-bounce-connector"


class AlertKind(enum.StrEnum):
    DEAD_EVENT = "dead_event"
    REAUTH_REQUIRED = "reauth_required"
    INCIDENT_OPENED = "incident_opened"
    RULE_NOTIFY = "rule_notify"
    BACKLOG = "backlog"


_TITLES = {
    AlertKind.DEAD_EVENT: "An event failed for good",
    AlertKind.REAUTH_REQUIRED: "Keap refuses the connector's credentials",
    AlertKind.INCIDENT_OPENED: "Sender-side incident opened",
    AlertKind.RULE_NOTIFY: "A policy rule asks for a person",
    AlertKind.BACKLOG: "Bounce events are waiting too long",
}


@dataclass(frozen=True)
class Alert:
    """What happened, for a person: ``subject`` names the thing it is about (the dedupe key
    with ``kind``: one alert per kind and subject an hour), ``text`` says it in a few lines,
    ``details`` adds name/value pairs (sent along to the webhook, listed in the email)."""

    kind: AlertKind
    subject: str
    text: str
    details: Mapping[str, str] = field(default_factory=dict)


async def raise_alert(store: Store, alert: Alert, now: datetime) -> bool:
    """Put ``alert`` in the outbox unless the same kind and subject was raised within the hour
    before ``now``; return whether it was stored. Store failures propagate (the caller's own
    write failed too); delivery happens later, in the sender."""
    stored = await store.add_alert(
        NewAlert(
            kind=AlertKind(alert.kind).value,
            subject=alert.subject,
            text=alert.text,
            details={str(k): str(v) for k, v in alert.details.items()},
            raised_at=now,
        ),
        DEDUPE_WINDOW,
    )
    if stored is None:
        log.debug("alert %s %r raised again within the hour: not stored", alert.kind, alert.subject)
        return False
    log.info("alert %s stored (%s): %s", stored, alert.kind, alert.subject)
    return True


# --- what a person reads ------------------------------------------------------------------------


def title(kind: str) -> str:
    try:
        return _TITLES[AlertKind(kind)]
    except ValueError:
        return kind


def email_subject(record: AlertRecord) -> str:
    line = f"[{PRODUCT}] {title(record.kind)}: {plain(record.subject)}"
    return " ".join(line.split())[:200]


def email_body(record: AlertRecord) -> str:
    lines = [title(record.kind), "", plain(record.text), ""]
    lines += [f"{plain(k)}: {plain(v)}" for k, v in sorted(record.details.items())]
    lines += [
        f"kind: {record.kind}",
        f"subject: {plain(record.subject)}",
        f"raised: {record.raised_at.isoformat(timespec='seconds')}",
        "",
        f"Sent by {PRODUCT}; `connector alerts list` shows every alert and its delivery.",
    ]
    return "\n".join(lines) + "\n"


def _slack_escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup (``<!channel>``, links): outside data may
    not ping a channel or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(record: AlertRecord) -> dict[str, object]:
    """Slack-compatible: ``text`` is what a chat shows; the rest is for scripts."""
    text = f"*{title(record.kind)}*: {_slack_escape(plain(record.subject))}\n"
    text += _slack_escape(plain(record.text))
    return {
        "text": text,
        "kind": record.kind,
        "subject": record.subject,
        "raised_at": record.raised_at.isoformat(timespec="seconds"),
        "details": dict(record.details),
    }


# --- channels -----------------------------------------------------------------------------------


class AlertDeliveryError(ConnectorError):
    """A channel did not take an alert; one line, no secret."""

    default_hint = ""


class Channel(Protocol):
    name: str

    async def deliver(self, record: AlertRecord) -> None:
        """Hand the alert over, or raise ``AlertDeliveryError``."""


@dataclass
class EmailChannel:
    """An email per alert to ``recipients`` through the SMTP server of the report."""

    server: MailServer
    recipients: Sequence[str]
    ssl_context: ssl.SSLContext | None = None
    name: str = "email"

    async def deliver(self, record: AlertRecord) -> None:
        from connector import mail

        message = mail.compose(
            sender=self.server.sender,
            recipients=list(self.recipients),
            subject=email_subject(record),
            text=email_body(record),
        )
        try:
            await asyncio.to_thread(mail.send, self.server, message, ssl_context=self.ssl_context)
        except mail.MailError as exc:
            raise AlertDeliveryError(str(exc)) from None


def safe_url(url: str) -> str:
    """Where a URL points, for a log line: scheme and host only (the path or query of an
    alert webhook is its secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass
class WebhookChannel:
    """A JSON POST per alert; any 2xx answer is delivery."""

    url: str
    timeout: float = 10.0
    transport: httpx.AsyncBaseTransport | None = None
    name: str = "webhook"

    async def deliver(self, record: AlertRecord) -> None:
        import httpx

        where = safe_url(self.url)
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, transport=self.transport, follow_redirects=False
            ) as client:
                response = await client.post(self.url, json=webhook_payload(record))
        except httpx.TimeoutException:
            raise AlertDeliveryError(f"the alert webhook {where} did not answer in time") from None
        except httpx.HTTPError as exc:
            reason = scrub(" ".join(str(exc).replace(self.url, where).split()))[:160]
            raise AlertDeliveryError(
                f"cannot reach the alert webhook {where}: {reason or type(exc).__name__}",
                hint="check CONNECTOR_ALERT_WEBHOOK_URL",
            ) from None
        if not response.is_success:
            raise AlertDeliveryError(
                f"the alert webhook {where} answered {response.status_code} "
                f"{response.reason_phrase}".rstrip()
            )


def channels_from_settings(settings: Settings) -> list[Channel]:
    """The channels the settings configure: none, email, webhook or both.

    An alert email without a usable SMTP server is a ``ConfigError`` (one line), so ``serve``
    and ``worker`` refuse to start with alerts that could never go out.
    """
    channels: list[Channel] = []
    if settings.connector_alert_email:
        from connector.mail import MailServer, parse_recipients

        try:
            server = MailServer.from_settings(settings)
            recipients = parse_recipients(settings.connector_alert_email)
        except ConfigError as exc:
            raise ConfigError(f"CONNECTOR_ALERT_EMAIL is set, but {exc}", hint=exc.hint) from None
        channels.append(EmailChannel(server, recipients))
    if settings.connector_alert_webhook_url is not None:
        channels.append(WebhookChannel(settings.connector_alert_webhook_url.get_secret_value()))
    return channels


def configured_channel_names(settings: Settings) -> list[str]:
    """The channels the settings name, without checking them (``alerts list``)."""
    names = ["email"] if settings.connector_alert_email else []
    return names + (["webhook"] if settings.connector_alert_webhook_url is not None else [])


async def send_test_alert(
    channels: Sequence[Channel], now: datetime
) -> dict[str, AlertDeliveryError | None]:
    """Send a test alert to every channel now (not through the outbox); per channel, None
    when it took it, else the error."""
    record = AlertRecord(
        id=0,
        kind="test",
        subject="test alert",
        text="This is a test alert from `connector alerts test`: this channel works.",
        details={"host": socket.gethostname()},
        raised_at=now,
        delivered={},
        attempts=1,
        next_attempt_at=now,
        last_error=None,
        done_at=None,
    )
    results: dict[str, AlertDeliveryError | None] = {}
    for channel in channels:
        try:
            await channel.deliver(record)
        except AlertDeliveryError as exc:
            results[channel.name] = exc
        else:
            results[channel.name] = None
    return results


# --- the sender ---------------------------------------------------------------------------------


Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SenderOptions:
    batch: int = 20
    lease: timedelta = timedelta(minutes=5)
    poll_seconds: float = 5.0
    base_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=1)
    # An alert older than this is history, not news: shown by `alerts list`, never sent (a
    # channel configured today does not mail a year of old alerts).
    max_age: timedelta = timedelta(days=7)
    backlog_after: timedelta = BACKLOG_AFTER


class AlertSender:
    """Delivers the outbox to the channels; ``run`` is the background task of serve/worker."""

    def __init__(
        self,
        store: Store,
        channels: Sequence[Channel],
        *,
        clock: Clock = _utcnow,
        owner: str | None = None,
        options: SenderOptions | None = None,
    ) -> None:
        self._store = store
        self._channels = list(channels)
        self._clock = clock
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}:alerts"
        self._options = options or SenderOptions()
        self._failing: dict[str, str] = {}  # channel -> last error logged, to log changes once

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Check the backlog and deliver what is due until ``stop``; never raises."""
        wake = wake or asyncio.Event()
        while not stop.is_set():
            await self.tick()
            wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            await asyncio.wait(
                waiters, timeout=self._options.poll_seconds, return_when="FIRST_COMPLETED"
            )
            for waiter in waiters:
                waiter.cancel()

    async def tick(self) -> None:
        """One pass of ``run``: every failure is logged here, none leaves."""
        try:
            await self.check_backlog()
        except Exception as exc:  # the sender must outlive any failure
            log.warning("could not check the event backlog: %s", exc)
        try:
            await self.deliver_due()
        except Exception as exc:
            log.warning("could not deliver alerts; retrying: %s", exc)

    async def check_backlog(self) -> bool:
        """Raise ``backlog`` when the oldest waiting event is older than the limit."""
        stats = await self._store.queue_stats()
        age = stats.oldest_queued_age_seconds
        limit = self._options.backlog_after
        if age is None or age <= limit.total_seconds():
            return False
        waiting = sum(stats.counts.get(s, 0) for s in ("queued", "failed", "processing"))
        minutes = int(age // 60)
        alert = Alert(
            AlertKind.BACKLOG,
            "event queue",
            f"The oldest waiting bounce event has waited {minutes} minutes "
            f"(limit {int(limit.total_seconds() // 60)}); {waiting} event(s) wait. "
            "Is a worker running? `connector events list` shows them.",
            {"oldest_minutes": str(minutes), "waiting": str(waiting)},
        )
        return await raise_alert(self._store, alert, self._clock())

    async def deliver_due(self) -> int:
        """Try every due alert once on every channel it still needs; return how many are now
        delivered everywhere."""
        if not self._channels:
            return 0
        now = self._clock()
        records = await self._store.claim_alerts(
            self._options.batch,
            self._options.lease,
            self._owner,
            now,
            now - self._options.max_age,
        )
        done = 0
        for record in records:
            done += await self._deliver(record)
        return done

    async def _deliver(self, record: AlertRecord) -> int:
        delivered = dict(record.delivered)
        errors: list[str] = []
        for channel in self._channels:
            if channel.name in delivered:
                continue
            try:
                await channel.deliver(record)
            except Exception as exc:  # a channel bug is its failure, no more
                message = str(exc) if isinstance(exc, ConnectorError) else type(exc).__name__
                errors.append(f"{channel.name}: {message}")
                self._note_failure(channel.name, record, message)
                continue
            delivered[channel.name] = self._clock()
            self._note_success(channel.name, record)
        now = self._clock()
        retry_at = None if not errors else now + self._backoff(record.attempts)
        error = "; ".join(errors) if errors else record.last_error
        held = await self._store.finish_alert(
            record.id, self._owner, now, delivered, error, retry_at
        )
        if not held:
            log.warning("alert %s was taken over by another sender", record.id)
        return int(retry_at is None and held)

    def _backoff(self, attempts: int) -> timedelta:
        base = self._options.base_backoff.total_seconds()
        ceiling = min(self._options.max_backoff.total_seconds(), base * 2 ** max(0, attempts - 1))
        return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 (jitter)

    def _note_failure(self, channel: str, record: AlertRecord, message: str) -> None:
        if self._failing.get(channel) != message:
            log.warning(
                "alert %s (%s) not delivered by %s; will retry: %s",
                record.id,
                record.kind,
                channel,
                message,
            )
        self._failing[channel] = message

    def _note_success(self, channel: str, record: AlertRecord) -> None:
        if self._failing.pop(channel, None) is not None:
            log.info("alert channel %s delivers again", channel)
        log.info("alert %s (%s) delivered by %s", record.id, record.kind, channel)
