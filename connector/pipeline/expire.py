"""Expired opt-outs: the address opted in again for a retest (DESIGN 7a, a rule's ``expire``).

An opt-out done by a rule with ``expire`` records ``expire_at`` in its audit row, which makes the
row fall due then (``audit.due_at``). The worker's due-check (and the end of ``sync``) takes each
due row once across replicas (``Store.claim_due``), reads the address's status in Keap first,
and plans the re-opt-in purely from it (:func:`plan_expiry`): Keap's API opts an address in only
from a few manual statuses (keap-api.md 2.4), never from a bounce status, so anything else is a
``skipped`` step with that reason. Otherwise the address is opted in with a reason, tagged
"Bounce Retest" and a note says why.

The steps are steps of the opt-out's own event (``reopt_in``, ``tag_add:Bounce Retest``,
``note:retest``), recorded through the outcome codec like any other, so ``events show``, the
audit, the report and ``undo`` see them beside the opt-out they follow; a step recorded final
is never taken again, and the note is recorded ``pending`` before it is sent and looked for in
Keap on a re-run, as the executor does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from connector.errors import ConnectorError, KeapNotFoundError, StoreUnavailableError
from connector.keap.client import KeapClient
from connector.keap.models import EmailAddressStatus
from connector.logs import mask_email
from connector.metrics import Metrics
from connector.pipeline.outcome import (
    Outcome,
    Reason,
    SkipReason,
    StepKind,
    StepRecord,
    from_audit,
    to_audit,
)
from connector.pipeline.plan import PlannedStep
from connector.pipeline.text import keap_line, keap_text
from connector.store import AuditEntry, Store

log = logging.getLogger("connector.expire")

RETEST_TAG = "Bounce Retest"
RETEST_NOTE = "retest"  # the note step's subject: ``note:retest`` beside the event's ``note``
# Keap's documented rule: an API opt-in revives only these statuses (keap-api.md 2.4).
REOPTABLE = frozenset(
    {"UNENGAGED_MARKETABLE", "UNENGAGED_NON_MARKETABLE", "NON_MARKETABLE", "MANUAL"}
)
CLAIM_FOR = timedelta(minutes=10)  # a replica that dies mid-way leaves the row due again after it
BATCH = 50


@dataclass(frozen=True)
class Expiry:
    """An opt-out whose ``expire`` has passed: its audit row and what it recorded."""

    entry: AuditEntry
    email: str
    set_status: str | None  # the status Keap answered the connector's opt-out with

    @classmethod
    def of(cls, entry: AuditEntry) -> Expiry | None:
        record = from_audit(entry)
        after, before = record.after or {}, record.before or {}
        email = after.get("email") or before.get("email")
        return cls(entry, email, after.get("status")) if email else None


def plan_expiry(
    expiry: Expiry, status: EmailAddressStatus | None, reopted: bool
) -> tuple[PlannedStep, ...]:
    """The re-opt-in's steps from the status read just now; pure. ``reopted``: an earlier
    attempt already opted the address in (its tag and note may still be owed)."""
    skip = None if reopted else refusal(expiry, status)
    steps = [PlannedStep(StepKind.REOPT_IN, "", skip)]
    if skip is None:
        steps += [
            PlannedStep(StepKind.TAG_ADD, RETEST_TAG),
            PlannedStep(StepKind.NOTE, RETEST_NOTE),
        ]
    return tuple(steps)


def refusal(expiry: Expiry, status: EmailAddressStatus | None) -> Reason | None:
    """Why the address is not opted in again, or None when it is still as the connector left it
    and Keap allows the opt-in."""
    if status is None:
        return Reason(SkipReason.ADDRESS_UNKNOWN)
    current = status.status.strip().upper()
    if status.opted_in:
        return Reason(SkipReason.ALREADY_MARKETABLE, current)
    if current not in REOPTABLE:
        return Reason(SkipReason.OPT_IN_REFUSED, current or "an unknown status")
    if expiry.set_status and current != expiry.set_status.strip().upper():
        return Reason(SkipReason.STATUS_CHANGED, current)
    return None


def retest_marker(event_id: int) -> str:
    return f"[bounce-connector event {event_id}] retest"


async def run_due_expiries(
    store: Store,
    client: KeapClient,
    now: datetime,
    *,
    note_title: str,
    metrics: Metrics | None = None,
) -> list[StepRecord]:
    """Every opt-out due by ``now`` taken once: its re-opt-in steps, recorded; returns them.

    A Keap failure leaves the row claimed, so it falls due again after ``CLAIM_FOR``; the steps
    already recorded final are not taken again then.
    """
    taken: list[StepRecord] = []
    for entry in await store.due_audit(now, BATCH):
        if not await store.claim_due(entry.id, now, now + CLAIM_FOR):
            continue  # another replica took it
        expiry = Expiry.of(entry)
        if expiry is None:
            await store.clear_due(entry.id)
            continue
        run = _Run(store, client, expiry, note_title, metrics)
        try:
            taken += await run.all_steps()
        except StoreUnavailableError:
            raise
        except ConnectorError as exc:
            log.warning(
                "the expired opt-out of %s (action %s) is retried later: %s",
                mask_email(expiry.email),
                entry.id,
                exc,
            )
            continue
        await store.clear_due(entry.id)
    return taken


@dataclass
class _Run:
    store: Store
    client: KeapClient
    expiry: Expiry
    note_title: str
    metrics: Metrics | None

    @property
    def entry(self) -> AuditEntry:
        return self.expiry.entry

    async def all_steps(self) -> list[StepRecord]:
        done = {
            r.key: r for r in map(from_audit, await self.store.audit_for_event(self.entry.event_id))
        }
        earlier = done.get(StepRecord(StepKind.REOPT_IN, "", Outcome.PENDING).key)
        reopted = earlier is not None and earlier.outcome is Outcome.DONE
        status = None if reopted else await self.status()
        records: list[StepRecord] = []
        for step in plan_expiry(self.expiry, status, reopted):
            base = StepRecord(
                kind=step.kind,
                subject=step.subject,
                outcome=Outcome.PENDING,
                before={
                    "email": self.expiry.email,
                    "status": None if status is None else status.status,
                }
                if step.kind is StepKind.REOPT_IN
                else None,
            )
            previous = done.get(base.key)
            if previous is not None and previous.final:
                continue
            if step.skip is not None:
                records.append(
                    await self.record(replace(base, outcome=Outcome.SKIPPED, reason=step.skip))
                )
            elif step.kind is StepKind.REOPT_IN:
                records.append(
                    await self.record(
                        replace(base, outcome=Outcome.DONE, after=await self.opt_in())
                    )
                )
            elif step.kind is StepKind.TAG_ADD:
                tag = await self.client.find_or_create_tag(step.subject)
                await self.client.apply_tag(tag.id, [self.entry.contact_id])
                records.append(
                    await self.record(replace(base, outcome=Outcome.DONE, after={"tag_id": tag.id}))
                )
            else:
                records.append(await self.note(base, previous))
        return records

    async def status(self) -> EmailAddressStatus | None:
        try:
            return await self.client.get_email_status(self.expiry.email)
        except KeapNotFoundError:
            return None

    async def opt_in(self) -> dict[str, str | None]:
        since = self.entry.updated_at.date().isoformat()
        status = await self.client.set_email_opt_status(
            self.expiry.email,
            opted_in=True,
            reason=f"Bounce retest: the opt-out of {since} expired (action {self.entry.id})",
        )
        return {"email": status.email, "status": status.status, "action": str(self.entry.id)}

    async def note(self, base: StepRecord, previous: StepRecord | None) -> StepRecord:
        marker = retest_marker(self.entry.event_id)
        if previous is not None and previous.outcome in (Outcome.PENDING, Outcome.FAILED):
            notes = await self.client.list_notes(self.entry.contact_id)
            if any(marker in (note.text or "") for note in notes):
                found = {**(previous.after or {}), "found": "in Keap after a lost answer"}
                return await self.record(replace(base, outcome=Outcome.DONE, after=found))
        await self.record(base)
        since = self.entry.updated_at.date().isoformat()
        text = (
            f"The opt-out of {self.expiry.email} on {since} (action {self.entry.id}) expired, "
            f"as its bounce policy rule says: the address is opted in again for a retest and "
            f"tagged '{RETEST_TAG}'. If it bounces again, the policy applies as before."
        )
        note = await self.client.create_note(
            self.entry.contact_id,
            title=keap_line(self.note_title),
            text=keap_text(f"{text}\n\n{marker}"),
        )
        return await self.record(replace(base, outcome=Outcome.DONE, after={"note_id": note.id}))

    async def record(self, record: StepRecord) -> StepRecord:
        write = to_audit(
            record,
            event_id=self.entry.event_id,
            contact_id=self.entry.contact_id,
            detail=f"expire of action {self.entry.id}",
            dry_run=False,
        )
        await self.store.write_audit(write)
        if self.metrics is not None:
            self.metrics.step(record, dry_run=False)
        return record


def due_summary(records: Sequence[StepRecord]) -> str:
    """One log line for a due-check's work."""
    return "; ".join(record.describe() for record in records)
