"""The one typed record of what happened to each step of a plan (DESIGN 1b), and its codec.

Every output that says what the connector did (the Keap note, ``events list/show``, ``audit``,
``report`` in every format, ``/metrics``, the demo summary) renders a :class:`StepRecord` built
by :func:`from_audit`, so none of them can disagree with another. The audit table is the only
place a step is stored; its ``step`` column is a key this module writes and alone parses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connector.logs import mask_email
from connector.store import AuditEntry, AuditWrite, StepStatus


class StepKind(StrEnum):
    """What a step does. ``target`` records which address the event acts on, and why."""

    TARGET = "target"
    OPT_OUT = "opt_out"
    PROMOTE = "promote"
    BLANK_EMAIL = "blank_email"
    TAG_ADD = "tag_add"
    TAG_REMOVE = "tag_remove"
    NOTE = "note"
    TASK = "task"
    UNDO = "undo"
    REOPT_IN = "reopt_in"  # an expired opt-out: the address opted in again (DESIGN 7a expire)
    NOTIFY = "notify"  # a rule's ``notify``: a ``rule_notify`` alert raised (DESIGN 7a)

    @property
    def destructive(self) -> bool:
        """Steps that need evidence that this address bounced (DESIGN 1a)."""
        return self in (StepKind.OPT_OUT, StepKind.PROMOTE, StepKind.BLANK_EMAIL)

    @property
    def severity(self) -> int:
        return _SEVERITY.get(self, 0)


_SEVERITY = {StepKind.OPT_OUT: 1, StepKind.PROMOTE: 2, StepKind.BLANK_EMAIL: 3}


class Outcome(StrEnum):
    """How a step ended; ``pending`` is only ever seen while a write's answer is outstanding."""

    DONE = "done"
    SKIPPED = "skipped"
    PLANNED = "planned"
    FAILED = "failed"
    PENDING = "pending"


class SkipReason(StrEnum):
    """The fixed list of reasons a step is skipped; ``{detail}`` is filled per step."""

    ALREADY_NON_MARKETABLE = "already non-marketable in Keap ({detail})"
    NOT_ON_CONTACT = "posted address not on the contact"
    PROTECTED = "protected contact"
    INCIDENT_OPEN = "incident open at {detail}"
    ALREADY_TAGGED = "the contact already has the tag"
    NOT_TAGGED = "the contact does not have the tag"
    SAME_EPISODE = "already written for this address and bounce episode"
    ADDRESS_GONE = "the address is no longer on the contact"
    NO_SPARE = "no marketable address in EMAIL2 or EMAIL3 to promote; opted out instead"
    NOT_PRIMARY = "the bounced address is not EMAIL1; opted out instead"
    OPT_IN_REFUSED = "Keap refuses opt-in from {detail}"
    STATUS_CHANGED = "the status changed since the connector set it ({detail})"
    ALREADY_MARKETABLE = "already marketable in Keap ({detail})"
    ADDRESS_UNKNOWN = "Keap no longer knows the address"
    NOT_RETESTED = "the address was not opted in again"
    ALERTED_RECENTLY = "the same alert was raised within the hour"

    def text(self, detail: str = "") -> str:
        return self.value.format(detail=detail)


@dataclass(frozen=True)
class Reason:
    """A skip reason and its detail; stored as ``name`` or ``name:detail``."""

    code: SkipReason
    detail: str = ""

    def __str__(self) -> str:
        return self.code.text(self.detail)

    def encode(self) -> str:
        return f"{self.code.name}:{self.detail}" if self.detail else self.code.name

    @classmethod
    def decode(cls, text: str | None) -> Reason | None:
        if not text:
            return None
        name, _, detail = text.partition(":")
        try:
            return cls(SkipReason[name], detail)
        except KeyError:
            return None


@dataclass(frozen=True)
class StepRecord:
    """One step and its outcome. ``subject`` is the tag name, task title, field or action id.

    ``before`` and ``after`` are JSON objects (the old and new value, the address acted on) so
    that ``undo`` can put a value back and every renderer shows the same facts.
    """

    kind: StepKind
    subject: str
    outcome: Outcome
    reason: Reason | None = None
    before: dict[str, str | None] | None = None
    after: dict[str, str | None] | None = None
    audit_id: int | None = None
    undone: bool = False

    @property
    def key(self) -> str:
        return step_key(self.kind, self.subject)

    @property
    def final(self) -> bool:
        """Whether a re-run must leave the step alone."""
        return self.outcome in (Outcome.DONE, Outcome.SKIPPED)

    def describe(self) -> str:
        """``opt out a***@example.com: skipped (already non-marketable in Keap (HARD_BOUNCE))``."""
        text = f"{self.title()}: {self.outcome.value}"
        if self.reason is not None:
            text += f" ({self.reason})"
        elif self.kind is StepKind.TARGET and self.after and self.after.get("evidence"):
            text = f"{self.title()} ({self.after['evidence']})"
        if self.undone:
            text += " (undone)"
        return text

    def title(self) -> str:
        email = _address(self)
        masked = mask_email(email) if email else "the address"
        field = (self.before or {}).get("field") or (self.after or {}).get("field") or ""
        where = f"{field} {masked}".strip()
        titles = {
            StepKind.TARGET: f"address {where}",
            StepKind.OPT_OUT: f"opt out {masked}",
            StepKind.PROMOTE: f"promote {_spare(self)} over {masked}",
            StepKind.BLANK_EMAIL: f"blank {where}",
            StepKind.TAG_ADD: f"add tag '{self.subject}'",
            StepKind.TAG_REMOVE: f"remove tag '{self.subject}'",
            StepKind.NOTE: "note",
            StepKind.TASK: f"task '{self.subject}'",
            StepKind.UNDO: f"undo action {self.subject}",
            StepKind.REOPT_IN: f"re-opt-in {masked} (opt-out expired)",
            StepKind.NOTIFY: f"alert for rule {self.subject}",
        }
        return titles[self.kind]


def _address(record: StepRecord) -> str | None:
    for values in (record.before, record.after):
        if values and values.get("email"):
            return values["email"]
    return None


def _spare(record: StepRecord) -> str:
    spare = (record.before or {}).get("spare")
    field = (record.before or {}).get("spare_field") or record.subject or "a spare address"
    return f"{field} {mask_email(spare)}" if spare else field


def step_key(kind: StepKind, subject: str) -> str:
    """The step's key inside its event: stable across re-runs and releases, unique per event.

    A blank keeps the key it has had since the first release (``blank:EMAIL2``), so an event
    begun before an upgrade finds its own pending blank.
    """
    if kind is StepKind.BLANK_EMAIL:
        return f"blank:{subject}"
    return f"{kind.value}:{subject}" if subject else kind.value


_STATUS = {
    Outcome.DONE: StepStatus.DONE,
    Outcome.SKIPPED: StepStatus.SKIPPED,
    Outcome.PLANNED: StepStatus.PLANNED,
    Outcome.FAILED: StepStatus.FAILED,
    Outcome.PENDING: StepStatus.PENDING,
}
_OUTCOME = {status: outcome for outcome, status in _STATUS.items()}


def to_audit(
    record: StepRecord, *, event_id: int, contact_id: str, detail: str | None, dry_run: bool
) -> AuditWrite:
    return AuditWrite(
        event_id=event_id,
        contact_id=contact_id,
        step=record.key,
        kind=record.kind.value,
        status=_STATUS[record.outcome],
        before_value=_dump(record.before),
        after_value=_dump(record.after),
        detail=detail,
        dry_run=dry_run,
        reason=record.reason.encode() if record.reason else None,
        due_at=_due(record) if not dry_run else None,
    )


def _due(record: StepRecord) -> datetime | None:
    """A done step that carries ``expire_at`` (an opt-out that expires) falls due then."""
    text = (record.after or {}).get("expire_at")
    if record.outcome is not Outcome.DONE or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def from_audit(entry: AuditEntry) -> StepRecord:
    """The record an audit row holds; rows written before this codec are read the same way."""
    kind = StepKind(entry.kind)
    prefix = "blank:" if kind is StepKind.BLANK_EMAIL else f"{kind.value}:"
    subject = entry.step[len(prefix) :] if entry.step.startswith(prefix) else ""
    return StepRecord(
        kind=kind,
        subject=subject,
        outcome=_OUTCOME[entry.status],
        reason=Reason.decode(entry.reason),
        before=_load(entry.before_value),
        after=_load(entry.after_value),
        audit_id=entry.id,
        undone=entry.undone_at is not None,
    )


def records(entries: Iterable[AuditEntry]) -> list[StepRecord]:
    return [from_audit(entry) for entry in entries]


def _dump(values: dict[str, str | None] | None) -> str | None:
    return json.dumps(values, ensure_ascii=False, sort_keys=True) if values is not None else None


def _load(text: str | None) -> dict[str, str | None] | None:
    """Older rows hold plain text (``note 12``) rather than JSON: keep it under ``value``."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"value": text}
    if not isinstance(data, dict):
        return {"value": text}
    return {str(k): None if v is None else str(v) for k, v in data.items()}


# --- summaries every renderer shares ---------------------------------------------------------


def action_step(steps: Sequence[StepRecord]) -> StepRecord | None:
    """The event's destructive step (opt out, blank), whatever its outcome."""
    found = [s for s in steps if s.kind.destructive]
    return max(found, key=lambda s: s.kind.severity, default=None)


def action_text(steps: Sequence[StepRecord]) -> str:
    """``opt_out done``, ``opt_out skipped (reason)`` or ``none``: the action column."""
    step = action_step(steps)
    if step is None:
        return "none"
    text = f"{step.kind.value} {step.outcome.value}"
    if step.reason is not None:
        text += f" ({step.reason})"
    return text + (" (undone)" if step.undone else "")


def tally(steps: Iterable[StepRecord]) -> dict[str, int]:
    """Counts by ``kind outcome (reason)``, the words every summary uses; targets left out."""
    counts: dict[str, int] = {}
    for step in steps:
        if step.kind is StepKind.TARGET or step.outcome is Outcome.PENDING:
            continue
        key = f"{step.kind.value} {step.outcome.value}"
        if step.reason is not None:
            key += f" ({step.reason})"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def summary(steps: Sequence[StepRecord]) -> str:
    """One line for an event's ``outcome``: every step that is not the target, in plan order."""
    target = next((s for s in steps if s.kind is StepKind.TARGET), None)
    parts = [s.describe() for s in steps if s.kind not in (StepKind.TARGET, StepKind.UNDO)]
    if target is not None:
        parts.append(target.describe())
    return "; ".join(parts) if parts else "nothing to do"
