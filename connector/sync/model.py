"""What ``connector sync`` is asked to do and what it tells back: options, summary, plan rows,
and the progress callback. Standard library only, so the CLI can build its options (and ``--help``
can list the strategies) without importing the scan, the store or the Keap client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

# The worker claims this many events at once; the TagBatcher coalesces the tag writes of the
# events it processes together, and Keap takes up to 100 contacts per :applyTags call.
WORKER_CONCURRENCY = 100

PLAN_COLUMNS = ("contact", "address", "field", "status", "bounce_type", "rule", "action", "tags")


class Strategy(StrEnum):
    AUTO = "auto"
    CONTACTS = "contacts"
    ADDRESSES = "addresses"


@dataclass(frozen=True)
class SyncOptions:
    since: datetime | None = None
    dry_run: bool = False
    limit: int | None = None
    restart: bool = False
    strategy: Strategy = Strategy.AUTO
    install_signal_handlers: bool = True
    worker_concurrency: int = WORKER_CONCURRENCY


@dataclass(frozen=True)
class PlanRow:
    """One planned remediation of a dry run: plain text cells, in :data:`PLAN_COLUMNS` order."""

    contact: str
    address: str
    field: str
    status: str
    bounce_type: str
    rule: str
    action: str
    tags: str

    def cells(self) -> tuple[str, ...]:
        return tuple(getattr(self, c) for c in PLAN_COLUMNS)

    def as_dict(self) -> dict[str, str]:
        return dict(zip(PLAN_COLUMNS, self.cells(), strict=True))


@dataclass
class SyncSummary:
    """What a run did; the CLI prints it and tests assert on it.

    ``plan`` holds the dry run's rows (empty on a real run), in the order they were planned.
    """

    strategy: str = ""
    reason: str = ""
    dry_run: bool = False
    resumed: bool = False
    completed: bool = False
    interrupted: bool = False
    limit_reached: bool = False
    pages: int = 0
    contacts_scanned: int = 0
    addresses_listed: int = 0
    bounced_found: int = 0
    queued: int = 0
    already_queued: int = 0
    already_counted: int = 0
    planned: int = 0
    episodes_ended: int = 0
    # what became of the events this run queued (``--limit`` bounds how many it queues) ...
    remediated: int = 0
    failed: int = 0
    dead: int = 0
    # ... and of those queued before it (an interrupted run's findings, callbacks), which the
    # run's worker finishes too
    earlier_remediated: int = 0
    earlier_failed: int = 0
    earlier_dead: int = 0
    limit: int | None = None
    left_queued: int = 0
    api_calls: int = 0
    elapsed_seconds: float = 0.0
    plan: list[PlanRow] | None = None

    def lines(self) -> list[str]:
        state = "complete" if self.completed else "stopped early; the next run resumes"
        if self.limit_reached:
            state = "stopped at --limit; the next run resumes"
        found = (
            f"{self.bounced_found} bounced address(es) found: {self.queued} queued, "
            f"{self.already_queued} already queued, {self.already_counted} already counted"
        )
        if self.dry_run:
            found = f"{self.bounced_found} bounced address(es) found, {self.planned} planned"
        lines = [
            f"sync {state} (strategy {self.strategy}: {self.reason})",
            f"scanned {self.contacts_scanned} contact(s), {self.addresses_listed} address(es)",
            found,
        ]
        if not self.dry_run:
            limit = "" if self.limit is None else f" of limit {self.limit}"
            lines.append(
                f"remediated {self.remediated} new{limit}, {self.failed} to retry, "
                f"{self.dead} dead, {self.left_queued} left queued for `connector worker`"
            )
            if self.earlier_remediated or self.earlier_failed or self.earlier_dead:
                lines.append(
                    f"finished {self.earlier_remediated} queued by an earlier run or a "
                    f"callback, {self.earlier_failed} to retry, {self.earlier_dead} dead"
                )
        lines.append(f"{self.api_calls} Keap call(s) in {self.elapsed_seconds:.1f}s")
        return lines


def exit_code(summary: SyncSummary) -> int:
    """0 when the run did what was asked (to the end, or to ``--limit``); 130 when a signal
    stopped it, as for Ctrl-C anywhere in the CLI: scripts can tell an unfinished scan."""
    return 130 if summary.interrupted and not summary.completed else 0


@dataclass(frozen=True)
class ProgressSnapshot:
    """The run so far, as a progress display shows it."""

    strategy: str
    contacts_scanned: int
    addresses_listed: int
    bounced_found: int
    remediated: int
    api_calls: int
    elapsed_seconds: float

    @property
    def done(self) -> int:
        """What the total of :meth:`SyncProgress.on_start` counts: addresses or contacts."""
        return (
            self.addresses_listed if self.strategy == Strategy.ADDRESSES else self.contacts_scanned
        )

    def describe(self) -> str:
        rate = self.api_calls / max(1e-6, self.elapsed_seconds)
        return (
            f"{self.contacts_scanned} contacts, {self.bounced_found} bounced, "
            f"{self.remediated} remediated, {self.api_calls} calls, {rate:.1f}/s"
        )


class SyncProgress(Protocol):
    """How a run reports as it goes; the core never prints, a caller decides how to show it.

    ``on_start`` once the strategy is chosen (``total``: what ``done`` counts to, when known);
    ``on_progress`` after each page and about twice a second; ``on_finding`` for each planned
    row of a dry run (the same rows end up in ``SyncSummary.plan``); ``on_done`` once, last.
    """

    def on_start(self, strategy: str, total: int | None) -> None: ...

    def on_progress(self, snapshot: ProgressSnapshot) -> None: ...

    def on_finding(self, row: PlanRow) -> None: ...

    def on_done(self, snapshot: ProgressSnapshot) -> None: ...
