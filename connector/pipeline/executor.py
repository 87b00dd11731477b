"""Plan -> Keap writes -> one outcome per step, each recorded before the next is taken.

Exactly-once effects rest on the audit log. A step recorded ``done`` or ``skipped`` is never
taken again, so an event re-run after a crash or a failure picks up where it stopped. Notes,
tasks and blanks are not idempotent in Keap: before one is sent the step is recorded
``pending``, and a ``pending`` (or ``failed``) step found on a re-run is first looked for in
Keap (a note or task by the reference its text carries, a blank by the address being gone);
only if it is not there is it sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from connector.errors import KeapNotFoundError
from connector.keap.client import KeapClient
from connector.keap.models import WRITABLE_EMAIL_FIELDS, Contact, EmailField
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
from connector.pipeline.plan import PlannedStep, StepPlan, target_record
from connector.pipeline.tags import TagBatcher
from connector.pipeline.target import held, same_address
from connector.pipeline.text import keap_line, keap_text, note_text
from connector.store import Event, Store

if TYPE_CHECKING:
    from connector.alerts import Alert


def swapped(contact: Contact, field: str) -> list[tuple[str, str]]:
    """The contact's addresses with EMAIL1 and ``field`` exchanged (promote, and its undo)."""
    first = contact.in_field(EmailField.EMAIL1)
    other = contact.in_field(field)
    keep: list[tuple[str, str]] = []
    for address in contact.email_addresses:
        if not address.email or address.field not in WRITABLE_EMAIL_FIELDS:
            continue
        if first is not None and other is not None and address.field == EmailField.EMAIL1:
            keep.append((other.email, EmailField.EMAIL1.value))
        elif first is not None and other is not None and address.field == field:
            keep.append((first.email, field))
        else:
            keep.append((address.email, address.field))
    return keep


def event_marker(event_id: int) -> str:
    """The reference written into notes and tasks, so a lost answer can be checked in Keap."""
    return f"[bounce-connector event {event_id}]"


Values = dict[str, str | None]
Write = Callable[[], Awaitable[Values]]
Exists = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Executor:
    """Carries out plans; everything it talks to is injected, so tests can hand it fakes."""

    store: Store
    client: KeapClient
    tags: TagBatcher
    metrics: Metrics
    dry_run: bool = False

    async def execute(self, event: Event, plan: StepPlan) -> list[StepRecord]:
        """Every step of ``plan`` taken or skipped and recorded; returns the event's records."""
        run = _Run(self, event, plan)
        await run.start()
        await run.all_steps()
        return [from_audit(entry) for entry in await self.store.audit_for_event(event.id)]


@dataclass
class _Run:
    executor: Executor
    event: Event
    plan: StepPlan
    done: dict[str, StepRecord] = field(default_factory=dict)

    async def start(self) -> None:
        entries = await self.executor.store.audit_for_event(self.event.id)
        self.done = {record.key: record for record in map(from_audit, entries)}
        for index, title in enumerate(self.task_titles()):
            legacy = self.done.pop(f"task:{index}", None)  # tasks were keyed by position once
            if legacy is not None and legacy.subject.isdigit():
                self.done.setdefault(f"task:{title}", legacy)

    def task_titles(self) -> list[str]:
        return [s.subject for s in self.plan.steps if s.kind is StepKind.TASK]

    async def all_steps(self) -> None:
        steps = self.plan.steps
        for step in steps:
            if step.kind is StepKind.TARGET or step.kind.destructive:
                await self.step(step)
        tagging = [s for s in steps if s.kind in (StepKind.TAG_ADD, StepKind.TAG_REMOVE)]
        await asyncio.gather(*(self.step(step) for step in tagging))
        for step in steps:
            if step.kind in (StepKind.NOTE, StepKind.TASK):
                await self.step(step)
        for step in steps:
            if step.kind is StepKind.NOTIFY:
                await self.step(step)

    # --- one step ---------------------------------------------------------------------------

    async def step(self, step: PlannedStep) -> None:
        base = self.blank_record(step)
        previous = self.done.get(base.key)
        if previous is not None and previous.final:
            return
        if step.skip is not None:
            await self.record(replace(base, outcome=Outcome.SKIPPED, reason=step.skip))
            return
        if step.kind is StepKind.TARGET:
            await self.record(target_record(self.plan.target, Outcome.DONE))
            return
        if self.executor.dry_run:
            await self.record(replace(base, outcome=Outcome.PLANNED))
            return
        await self.take(step, base, previous)

    def blank_record(self, step: PlannedStep) -> StepRecord:
        address = self.plan.target.address
        before: Values | None = None
        if step.kind.destructive:
            before = {
                "email": address.email,
                "field": address.field,
                "status": address.email_opt_status,
            }
        if step.kind is StepKind.PROMOTE and step.subject:
            spare = self.plan.target.contact.in_field(step.subject)
            before = {**(before or {}), "spare": spare.email if spare else None}
            before["spare_field"] = step.subject
        return StepRecord(
            kind=step.kind, subject=step.subject, outcome=Outcome.PENDING, before=before
        )

    async def take(self, step: PlannedStep, base: StepRecord, previous: StepRecord | None) -> None:
        if step.kind is StepKind.OPT_OUT:
            await self.settle(base, self.opt_out(step))
        elif step.kind in (StepKind.TAG_ADD, StepKind.TAG_REMOVE):
            await self.tag(step, base)
        elif step.kind is StepKind.NOTIFY:
            await self.notify(step, base, previous)
        else:
            write, exists = self.unique(step)
            await self.settle_unique(base, previous, write, exists)

    async def settle(self, base: StepRecord, write: Write) -> None:
        try:
            after = await write()
        except BaseException as exc:
            await self.failed(base, exc)
            raise
        await self.record(replace(base, outcome=Outcome.DONE, after=after))

    async def settle_unique(
        self, base: StepRecord, previous: StepRecord | None, write: Write, exists: Exists
    ) -> None:
        """A write recorded pending before it is sent, and looked for before it is resent.

        A failure leaves it ``pending``, never ``failed``: whether Keap took it is unknown, and
        only a look in Keap on the next attempt can tell.
        """
        unsettled = previous is not None and previous.outcome in (Outcome.PENDING, Outcome.FAILED)
        if previous is not None and unsettled and await exists():
            found: Values = {**(previous.after or {}), "found": "in Keap after a lost answer"}
            await self.record(replace(base, outcome=Outcome.DONE, after=found))
            return
        await self.record(base)
        await self.record(replace(base, outcome=Outcome.DONE, after=await write()))

    async def failed(self, base: StepRecord, exc: BaseException) -> None:
        error = str(exc) or type(exc).__name__
        await self.record(replace(base, outcome=Outcome.FAILED, after={"error": error[:500]}))

    async def record(self, record: StepRecord) -> None:
        write = to_audit(
            record,
            event_id=self.event.id,
            contact_id=self.plan.target.contact.id,
            detail=self.plan.reason,
            dry_run=self.executor.dry_run,
        )
        await self.executor.store.write_audit(write)
        self.done[record.key] = record
        self.executor.metrics.step(record, dry_run=self.executor.dry_run)

    # --- the writes -------------------------------------------------------------------------

    def opt_out(self, step: PlannedStep) -> Write:
        async def write() -> Values:
            address = self.plan.target.address
            status = await self.executor.client.set_email_opt_status(
                address.email, opted_in=False, reason=self.plan.reason
            )
            after: Values = {"email": status.email, "status": status.status}
            if step.expire is not None:
                # The rule lets the opt-out expire: the audit row falls due then (DESIGN 7a).
                after["expire_at"] = (self.event.received_at + step.expire).isoformat()
            return after

        return write

    async def tag(self, step: PlannedStep, base: StepRecord) -> None:
        client, contact = self.executor.client, self.plan.target.contact
        try:
            tag_id = (await client.find_or_create_tag(step.subject)).id
        except BaseException as exc:
            await self.failed(base, exc)
            raise
        adding = step.kind is StepKind.TAG_ADD
        if (tag_id in contact.tag_ids) == adding:
            code = SkipReason.ALREADY_TAGGED if adding else SkipReason.NOT_TAGGED
            await self.record(replace(base, outcome=Outcome.SKIPPED, reason=Reason(code)))
            return

        async def write() -> Values:
            op = "add" if adding else "remove"
            try:
                await self.executor.tags.submit(op, tag_id, contact.id)
                return {"tag_id": tag_id}
            except KeapNotFoundError:
                # The cached id is gone in Keap (tag deleted or replaced): look it up or make
                # it again, once, and write with the new id.
                await client.forget_tag(step.subject, tag_id)
                fresh = (await client.find_or_create_tag(step.subject)).id
                await self.executor.tags.submit(op, fresh, contact.id)
                return {"tag_id": fresh}

        await self.settle(base, write)

    async def notify(
        self, step: PlannedStep, base: StepRecord, previous: StepRecord | None
    ) -> None:
        """Raise the rule's ``rule_notify`` alert into the outbox (the sender delivers it later,
        so no channel can hold up the event). Once per contact, address and rule an hour: a
        repeat within the hour is skipped. Recorded pending first, so a re-run that finds the
        alert already raised knows it raised it itself."""
        from connector.alerts import raise_alert

        alert = notify_alert(self.event, self.plan, step.subject)
        await self.record(base)
        after: Values = {"email": self.plan.target.address.email, "subject": alert.subject}
        if await raise_alert(self.executor.store, alert, self.event.received_at):
            await self.record(replace(base, outcome=Outcome.DONE, after=after))
        elif previous is not None and previous.outcome is Outcome.PENDING:
            after["found"] = "raised by an earlier attempt"
            await self.record(replace(base, outcome=Outcome.DONE, after=after))
        else:
            skip = Reason(SkipReason.ALERTED_RECENTLY)
            await self.record(replace(base, outcome=Outcome.SKIPPED, reason=skip, after=after))

    def unique(self, step: PlannedStep) -> tuple[Write, Exists]:
        if step.kind is StepKind.BLANK_EMAIL:
            return self.blank, self.blanked
        if step.kind is StepKind.PROMOTE:
            return self.promote(step.subject), self.promoted(step.subject)
        if step.kind is StepKind.NOTE:
            return self.note(step), self.note_exists
        index = self.task_titles().index(step.subject)
        return self.task(step.subject, index), self.task_exists(index)

    async def blank(self) -> Values:
        target = self.plan.target
        keep = [
            (a.email, a.field)
            for a in target.contact.email_addresses
            if a.email and a.field != target.address.field
        ]
        await self.executor.client.replace_email_addresses(target.contact.id, keep)
        return {"field": target.address.field, "email": None}

    async def blanked(self) -> bool:
        """The contact was read in this attempt: the address missing from it is blanked."""
        target = self.plan.target
        return held(target.contact, target.address.email) is None

    def promote(self, spare_field: str) -> Write:
        """The spare address into EMAIL1 and the bounced one into the spare's field: both stay
        on the contact, and the opt-out step that follows keeps the bounced one from mail."""

        async def write() -> Values:
            target = self.plan.target
            spare = target.contact.in_field(spare_field)
            assert spare is not None  # planned only when the field holds a marketable address
            keep = swapped(target.contact, spare_field)
            await self.executor.client.replace_email_addresses(target.contact.id, keep)
            return {"email": spare.email, "field": "EMAIL1", "moved_to": spare_field}

        return write

    def promoted(self, spare_field: str) -> Exists:
        async def exists() -> bool:
            """The contact was read in this attempt: the bounced address already in the spare's
            field means the swap went through."""
            moved = self.plan.target.contact.in_field(spare_field)
            bounced = self.plan.target.address.email
            return moved is not None and same_address(moved.email, bounced)

        return exists

    def note(self, step: PlannedStep) -> Write:
        async def write() -> Values:
            order = [s.kind for s in self.plan.steps]
            destructive = sorted(
                (r for r in self.done.values() if r.kind.destructive and r.kind in order),
                key=lambda r: order.index(r.kind),
            )
            text = note_text(self.plan, destructive)
            note = await self.executor.client.create_note(
                self.plan.target.contact.id,
                title=keap_line(self.plan.policy_plan.note_title),
                text=keap_text(f"{text}\n\n{event_marker(self.event.id)}"),
            )
            return {"note_id": note.id, "rules": ",".join(str(r) for r in step.rules)}

        return write

    async def note_exists(self) -> bool:
        marker = event_marker(self.event.id)
        notes = await self.executor.client.list_notes(self.plan.target.contact.id)
        return any(marker in (note.text or "") for note in notes)

    def task_marker(self, index: int) -> str:
        return f"{event_marker(self.event.id)} task {index + 1}"

    def task(self, title: str, index: int) -> Write:
        async def write() -> Values:
            task = await self.executor.client.create_task(
                self.plan.target.contact.id,
                title=keap_line(title),
                description=keap_text(f"{self.plan.reason}\n\n{self.task_marker(index)}"),
            )
            return {"task_id": task.id, "title": title}

        return write

    def task_exists(self, index: int) -> Exists:
        async def exists() -> bool:
            marker = self.task_marker(index)
            tasks = await self.executor.client.list_tasks(self.plan.target.contact.id)
            return any(marker in (task.description or "") for task in tasks)

        return exists


def notify_alert(event: Event, plan: StepPlan, rule: str) -> Alert:
    """The ``rule_notify`` alert of a rule with ``notify = true`` (DESIGN 7a): its subject is
    the contact, the address and the rule, so one person hears once an hour per address."""
    from connector.alerts import Alert, AlertKind

    target = plan.target
    contact, email = target.contact, target.address.email
    name = " ".join(n for n in (contact.given_name, contact.family_name) if n) or "(no name)"
    text = (
        f"Rule {rule} asks for a person: contact {contact.id} ({name}), address {email} "
        f"({target.address.field}), {event.bounce_type}. {plan.reason}"
    )
    details = {
        "contact_id": contact.id,
        "email": email,
        "field": str(target.address.field),
        "bounce_type": event.bounce_type,
        "rule": rule,
        "event": str(event.id),
        "action": plan.policy_plan.action.value,
    }
    return Alert(AlertKind.RULE_NOTIFY, f"contact {contact.id} {email} rule {rule}", text, details)
