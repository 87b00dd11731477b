"""Prometheus metrics of one connector process.

Each process owns its own registry (not the library's global one), so tests and the demo can run
several apps in one interpreter without collisions. Queue gauges come from the store, so every
replica reports the shared queue as it is, but never on a scrape's own time: ``QueueGauges``
refreshes them in the background at most once per interval and a scrape reads what is cached
(a flood of scrapes once ran a ``GROUP BY`` each on the store thread and pushed callback p50 to
seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from connector.errors import StoreUnavailableError
from connector.pipeline.outcome import Outcome, StepKind, StepRecord
from connector.store import QueueStats

log = logging.getLogger("connector.metrics")

QUEUE_REFRESH_SECONDS = 5.0
FIRST_SCRAPE_WAIT_SECONDS = 2.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_received = Counter(
            "connector_events_received",
            "Bounce callbacks and sync findings received, by bounce type and outcome.",
            ["bounce_type", "status"],
            registry=self.registry,
        )
        self.callbacks_rejected = Counter(
            "connector_callbacks_rejected",
            "Webhook calls refused, by HTTP status.",
            ["code"],
            registry=self.registry,
        )
        self.events_finished = Counter(
            "connector_events_finished",
            "Events the worker finished, by final status.",
            ["status"],
            registry=self.registry,
        )
        self.actions = Counter(
            "connector_actions",
            "Remediation steps carried out against Keap (or planned, in dry run), by kind.",
            ["kind", "dry_run"],
            registry=self.registry,
        )
        self.steps = Counter(
            "connector_steps",
            "Every step of every plan by kind and outcome (done, skipped, planned, failed), with "
            "the skip reason: the same record the audit log, reports and Keap notes show.",
            ["kind", "outcome", "reason", "dry_run"],
            registry=self.registry,
        )
        self.keap_calls = Gauge(
            "connector_keap_calls",
            "Keap API calls made by this process.",
            registry=self.registry,
        )
        self.keap_retries = Gauge(
            "connector_keap_retries",
            "Keap API calls retried by this process (429, 5xx, transport errors).",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "connector_queue_depth",
            "Events in the store, by status.",
            ["status"],
            registry=self.registry,
        )
        self.oldest_queued_age = Gauge(
            "connector_oldest_queued_age_seconds",
            "Age of the oldest event not yet done (0 when the queue is empty).",
            registry=self.registry,
        )

        self._received: dict[tuple[str, str], Any] = {}

    def received(self, bounce_type: str, status: str) -> None:
        """Count a callback; the labelled child is looked up once, it is on the ingest path."""
        key = (bounce_type, status)
        child = self._received.get(key)
        if child is None:
            child = self._received[key] = self.events_received.labels(
                bounce_type=bounce_type, status=status
            )
        child.inc()

    def step(self, record: StepRecord, *, dry_run: bool) -> None:
        """Count a recorded step; ``pending`` is a passing state, counted when it settles."""
        if record.outcome is Outcome.PENDING:
            return
        flag = str(dry_run).lower()
        reason = record.reason.code.name.lower() if record.reason else ""
        self.steps.labels(
            kind=record.kind.value, outcome=record.outcome.value, reason=reason, dry_run=flag
        ).inc()
        if record.outcome in (Outcome.DONE, Outcome.PLANNED) and record.kind is not StepKind.TARGET:
            self.actions.labels(kind=record.kind.value, dry_run=flag).inc()

    def observe_queue(self, stats: QueueStats) -> None:
        for status, count in stats.counts.items():
            self.queue_depth.labels(status=status).set(count)
        self.oldest_queued_age.set(stats.oldest_queued_age_seconds or 0.0)

    def observe_keap(self, calls: int, retries: int) -> None:
        self.keap_calls.set(calls)
        self.keap_retries.set(retries)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class QueueGauges:
    """The queue gauges, read from the store at most once per ``interval``, off the scrape.

    ``scrape()`` starts a refresh in the background when the cached values are older than the
    interval and returns at once: scrapes never queue behind the store, and however many come,
    the store answers one ``queue_stats`` per interval. Only the process's very first scrape
    waits (a bounded ``first_wait``) so the gauges are not empty. A failed refresh keeps the
    last values and is logged once until one succeeds again.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[QueueStats]],
        metrics: Metrics,
        *,
        interval: float = QUEUE_REFRESH_SECONDS,
        first_wait: float = FIRST_SCRAPE_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._metrics = metrics
        self._interval = interval
        self._first_wait = first_wait
        self._clock = clock
        self._started_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._observed = False
        self._failing = False

    async def scrape(self) -> None:
        now = self._clock()
        due = self._started_at is None or now - self._started_at >= self._interval
        if self._task is None and due:
            self._started_at = now
            self._task = asyncio.create_task(self._refresh(), name="queue-gauges")
        if not self._observed and self._task is not None:
            await asyncio.wait({self._task}, timeout=self._first_wait)

    async def _refresh(self) -> None:
        try:
            stats = await self._fetch()
        except StoreUnavailableError as exc:
            if not self._failing:
                log.warning("metrics: the store did not answer; queue gauges are stale: %s", exc)
            self._failing = True
        else:
            self._metrics.observe_queue(stats)
            self._observed = True
            self._failing = False
        finally:
            self._task = None
