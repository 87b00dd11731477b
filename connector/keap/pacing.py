"""Pacing Keap requests across every process that shares one store.

Keap's ceiling belongs to the OAuth client (or API key), not to a process: two ``serve`` replicas
and two ``worker`` processes each pacing themselves at ``KEAP_REQUESTS_PER_SECOND`` would send
four times that together and be throttled. So the processes draw their send times from one
timeline kept in the store they already share (the ``rate_limits`` table):

- The timeline is a single row holding the next free send time. A process reserves ``n`` slots
  with one atomic upsert that moves it ``n / rate`` seconds past ``max(next free, now)`` and
  returns where its slots begin; each request then sleeps until its own slot. PostgreSQL
  serialises the upserts on the row lock, SQLite on its write lock, so slots never overlap
  whichever host or process asks, and the combined rate never exceeds the ceiling.
- Round trips are batched by demand, not ahead of it: requests that arrive while a reservation
  is in flight wait for the next one, which takes slots for all of them at once. A busy process
  pays one round trip per batch; an idle one reserves nothing, so no capacity is parked with a
  process that does not use it. A process killed holding slots wastes at most one batch.
- An idle timeline restarts at now: unused past time is never lent out as a burst, so requests
  are evenly spaced, as Keap's per-second SpikeArrest wants.
- Keap's throttle headers still slow things down: ``observe`` (inherited) lowers this process's
  effective rate when the remaining budget runs low, and its slots then take a longer share of
  the timeline, which slows every other process down with it.
- When the store cannot answer, no request is sent: ``acquire`` raises
  ``StoreUnavailableError`` (retryable), rather than guess at a pace that nobody shares.

Slot times are epoch seconds by the store's clock, and the limiter compares them with its own
clock; both are the wall clock in production. Hosts' clocks must agree (NTP), as they must for
event leases already: a host whose clock lags by ``d`` can send up to ``d * rate`` requests
early when the timeline is idle, one running ahead only delays the others.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from connector.keap.retry import Clock, RateLimiter, Sleep

TIMELINE = "keap"
MAX_BATCH = 32


class SlotStore(Protocol):
    """The one store method the limiter needs (``connector.store.Store`` has it)."""

    async def reserve_send_slots(self, name: str, count: int, interval: float) -> float: ...


class SharedRateLimiter(RateLimiter):
    """A ``RateLimiter`` whose pace is shared through the store by every process using it.

    The client only calls ``acquire`` and ``observe``, so it cannot tell the two apart. The
    process-local token bucket behind ``reserve`` is not consulted by ``acquire`` here. One
    instance serves one event loop (the one ``runtime()`` runs in).
    """

    def __init__(
        self,
        rate: float,
        store: SlotStore,
        *,
        name: str = TIMELINE,
        max_batch: int = MAX_BATCH,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        cautious_start: bool = False,
    ) -> None:
        super().__init__(rate, clock=clock, sleep=sleep, cautious_start=cautious_start)
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._store = store
        self._name = name
        self._max_batch = max_batch
        self._waiting: list[asyncio.Future[float]] = []
        self._fetcher: asyncio.Task[None] | None = None
        self.round_trips = 0  # store calls made, for tests and diagnostics

    async def acquire(self) -> None:
        """Wait until this request's reserved slot on the shared timeline comes."""
        delay = await self._slot() - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def _slot(self) -> float:
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = asyncio.create_task(self._reserve_for_waiters())
        return await waiter

    async def _reserve_for_waiters(self) -> None:
        """Serve waiters in arrival order, one store round trip per batch of them."""
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: len(batch)]
            interval = 1.0 / self.effective_rate
            try:
                self.round_trips += 1
                first = await self._store.reserve_send_slots(self._name, len(batch), interval)
            except asyncio.CancelledError:
                for waiter in batch + self._waiting:
                    waiter.cancel()
                raise
            except Exception as exc:  # every waiter must learn why it got no slot
                _fail(batch, exc)
                continue
            for index, waiter in enumerate(batch):
                if not waiter.done():
                    waiter.set_result(first + index * interval)


def _fail(waiters: list[asyncio.Future[float]], exc: Exception) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(exc)
