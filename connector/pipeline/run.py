"""One event through the pipeline: read the contact, pick the target, count, plan, execute.

This module gathers what planning needs (the only reads besides the executor's); planning itself
is pure (:mod:`connector.pipeline.plan`) and only the executor writes to Keap.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from connector.alerts import Alert, AlertKind, raise_alert
from connector.bounces import BounceType
from connector.errors import KeapNotFoundError
from connector.keap.client import KeapClient
from connector.keap.models import Contact, EmailAddressStatus, EmailField
from connector.logs import mask_email
from connector.pipeline import target as targets
from connector.pipeline.executor import Executor
from connector.pipeline.outcome import StepKind, StepRecord, from_audit, summary
from connector.pipeline.plan import PastEvent, PlanInput, plan_steps
from connector.pipeline.target import Evidence, Target
from connector.policy import Policy, Strike, format_duration
from connector.policy.model import Incidents, address_domain
from connector.store import Event, Incident, Store

HISTORY_ROWS = 2000


@dataclass(frozen=True)
class Finished:
    """What became of an event: its step records, or why there was nothing to act on."""

    records: tuple[StepRecord, ...]
    skipped: str | None = None

    @property
    def text(self) -> str:
        return self.skipped if self.skipped is not None else summary(self.records)


class ContactLocks:
    """One event per contact at a time in this process.

    A bounce episode's note and task are decided from the contact's earlier steps; an event of
    the same contact planned at the same moment would not see them yet and write its own.
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def held(self) -> set[str]:
        """The contacts with an event in flight (or waiting); for diagnostics and tests."""
        return set(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


@dataclass(frozen=True)
class Pipeline:
    store: Store
    client: KeapClient
    policy: Policy
    executor: Executor
    locks: ContactLocks = field(default_factory=ContactLocks, compare=False)

    async def run(self, event: Event) -> Finished:
        subject = event.contact_id or f"email:{(event.email or '').lower()}"
        async with self.locks.hold(subject):
            return await self._run(event)

    async def _run(self, event: Event) -> Finished:
        found = await self.target(event)
        if isinstance(found, str):
            return Finished((), found)
        bounce_type = BounceType(event.bounce_type)
        history = await self.store.record_strike(
            event.id, found.contact.id, found.address.email, bounce_type.value, event.received_at
        )
        status = await self.engagement(event, found, bounce_type)
        incident = await self.incident(event, found, bounce_type)
        plan = plan_steps(
            PlanInput(
                policy=self.policy,
                target=found,
                bounce_type=bounce_type,
                occurred_at=event.received_at,
                keap_count=event.keap_count,
                strikes=[Strike(BounceType(s.bounce_type), s.occurred_at) for s in history],
                last_open_time=status.last_open_time if status else None,
                last_click_time=status.last_click_time if status else None,
                past=await self.past(event, found.contact.id),
                protected=await protected(self.client, self.policy, found.contact),
                incident=incident,
            )
        )
        return Finished(tuple(await self.executor.execute(event, plan)))

    async def target(self, event: Event) -> Target | str:
        contact = await self.contact(event)
        if isinstance(contact, str):
            return contact
        if rerun(event):
            earlier = await self.earlier_target(event, contact)
            if earlier is not None:
                return earlier
        found = targets.pick(contact, event.email)
        return found if found is not None else f"skipped: contact {contact.id} has no email address"

    async def earlier_target(self, event: Event, contact: Contact) -> Target | None:
        """The address an earlier attempt chose, even if that attempt has since removed it."""
        for record in map(from_audit, await self.store.audit_for_event(event.id)):
            if record.kind is StepKind.TARGET and record.after and record.after.get("email"):
                found = targets.pinned(
                    contact,
                    str(record.after["email"]),
                    record.after.get("field") or EmailField.UNSPECIFIED.value,
                )
                code = record.after.get("evidence_code") or ""
                evidence = Evidence.__members__.get(code, Evidence.EARLIER_ATTEMPT)
                return Target(found.contact, found.address, evidence)
        pinned = await self.store.struck_address(event.id)
        if pinned is None:
            return None
        return targets.pinned(contact, pinned, await self.blanked_field(event, pinned))

    async def blanked_field(self, event: Event, email: str) -> str:
        """Events begun before the target step existed: the field their blank step recorded."""
        for record in map(from_audit, await self.store.audit_for_event(event.id)):
            before = record.before or {} if record.kind is StepKind.BLANK_EMAIL else {}
            if targets.same_address(before.get("email") or "", email):
                return before.get("field") or EmailField.UNSPECIFIED.value
        return EmailField.UNSPECIFIED.value

    async def contact(self, event: Event) -> Contact | str:
        snapshot = contact_snapshot(event)
        if snapshot is not None:
            return snapshot
        if event.contact_id is None:
            found = await self.client.find_contacts_by_email(event.email or "")
            if not found:
                return f"skipped: no Keap contact has {mask_email(event.email or '')}"
            return sorted(
                found, key=lambda c: int(c.id) if c.id.isascii() and c.id.isdigit() else 0
            )[0]
        try:
            return await self.client.get_contact(event.contact_id)
        except KeapNotFoundError:
            return f"skipped: contact {event.contact_id} no longer exists in Keap (404)"

    async def engagement(
        self, event: Event, target: Target, bounce_type: BounceType
    ) -> EmailAddressStatus | None:
        """Opens and clicks matter only to rules that reset on engagement: read them only then."""
        if not needs_engagement(self.policy, bounce_type) or not target.on_contact:
            return None
        carried = status_snapshot(event, target.address.email)
        if carried is not None:
            return carried
        return await self.client.get_email_status(target.address.email)

    async def incident(self, event: Event, target: Target, bounce_type: BounceType) -> str | None:
        """The domain when an incident covering this bounce is open there (DESIGN 7a).

        The bounce is counted at its receiving domain in the store, so every replica counts
        into one total; the event whose bounce opened the incident raises the one alert (a re-run
        of it raises it again, and the outbox keeps one per domain and hour).
        """
        incidents = self.policy.incidents
        if incidents is None or not incidents.covers(bounce_type) or self.executor.dry_run:
            return None
        domain = address_domain(target.address.email)
        counted = await self.store.count_incident_bounce(
            event.id,
            domain,
            bounce_type.value,
            event.received_at,
            incidents.within,
            incidents.threshold,
        )
        found = counted.incident
        if found is None:
            return None
        if found.opened_by == event.id:
            await raise_alert(self.store, incident_alert(found, incidents), event.received_at)
        return domain

    async def past(self, event: Event, contact_id: str) -> list[PastEvent]:
        return await past_events(self.store, contact_id, but=event.id)


def incident_alert(incident: Incident, incidents: Incidents) -> Alert:
    window = format_duration(incidents.within)
    text = (
        f"{incident.peak} bounces of {', '.join(incidents.bounce_types)} at {incident.domain} "
        f"within {window} (threshold {incidents.threshold}): the receiving side is refusing our "
        f"mail. While the incident is open these bounces at {incident.domain} opt out, blank or "
        f"promote no address; it closes after {window} below the threshold."
    )
    details = {
        "domain": incident.domain,
        "count": str(incident.peak),
        "threshold": str(incidents.threshold),
        "within": window,
        "opened_at": incident.opened_at.isoformat(timespec="seconds"),
        "event": str(incident.opened_by),
    }
    return Alert(AlertKind.INCIDENT_OPENED, incident.domain, text, details)


async def protected(client: KeapClient, policy: Policy, contact: Contact) -> bool:
    """Whether the contact carries a ``protect_tags`` tag. The contact read already holds its
    tag ids (same call); only the tags' ids are looked up, once per name per process."""
    names = policy.settings.protect_tags
    if not names or not contact.tag_ids:
        return False
    return bool(await client.tag_ids_named(names) & set(contact.tag_ids))


async def past_events(store: Store, contact_id: str, but: int | None = None) -> list[PastEvent]:
    """The contact's earlier events as their audit rows tell them (dry runs left out)."""
    entries = await store.list_audit(contact_id=contact_id, limit=HISTORY_ROWS)
    grouped: dict[int, list[StepRecord]] = defaultdict(list)
    for entry in entries:
        if entry.event_id != but and not entry.dry_run:
            grouped[entry.event_id].append(from_audit(entry))
    return [PastEvent(event_id, steps) for event_id, steps in grouped.items()]


def rerun(event: Event) -> bool:
    """Whether an earlier attempt may have begun this event (crashed, failed, released, or
    finished and queued again by ``connector events retry``).

    Every claim counts an attempt, a release (which gives it back) leaves its error and a
    finished event its outcome, so only a first attempt can skip asking the store.
    """
    return event.attempts > 1 or event.last_error is not None or event.outcome is not None


def needs_engagement(policy: Policy, bounce_type: BounceType) -> bool:
    return any(r.reset_on_engagement and bounce_type in r.bounce_types for r in policy.rules)


def contact_snapshot(event: Event) -> Contact | None:
    """A sync event carries the contact as the scan read it, saving a read per contact."""
    if event.source != "sync":
        return None
    try:
        data = json.loads(event.raw).get("contact")
    except (ValueError, AttributeError):
        return None
    return Contact.model_validate(data) if isinstance(data, dict) else None


def status_snapshot(event: Event, email: str) -> EmailAddressStatus | None:
    """A sync event may carry the address status it read in bulk, saving a read per address."""
    if event.source != "sync":
        return None
    try:
        data = json.loads(event.raw).get("email_status")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    status = EmailAddressStatus.model_validate(data)
    return status if targets.same_address(status.email, email) else None
