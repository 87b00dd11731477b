"""``SharedRateLimiter``: Keap's per-client ceiling held by every process sharing one store.

The first tests use an in-memory timeline and fake time to pin down batching, ordering, the
header slowdown and failures; the last ones use the real stores on the real clock, several
limiters at once, as several replicas would run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import pairwise

import pytest
import respx

from connector.errors import StoreUnavailableError
from connector.keap.client import KeapClient
from connector.keap.pacing import SharedRateLimiter
from connector.store import open_store
from tests.keap.fakes import FakeClock


class MemoryTimeline:
    """The store's timeline in memory; ``gate`` holds reservations back to model a round trip."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.next_free = 0.0
        self.calls: list[tuple[str, int, float]] = []
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None

    async def reserve_send_slots(self, name: str, count: int, interval: float) -> float:
        self.calls.append((name, count, interval))
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        first = max(self.next_free, self.clock())
        self.next_free = first + count * interval
        return first


class Timeline:
    """Fake time for many tasks: each sleeper wakes at its own deadline; grants are recorded."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        wake = self.t + seconds
        await asyncio.sleep(0)
        self.t = max(self.t, wake)


async def grant_times(limiter: SharedRateLimiter, clock: Timeline, count: int) -> list[float]:
    async def one() -> float:
        await limiter.acquire()
        return clock.now()

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_concurrent_requests_share_one_round_trip_in_arrival_order() -> None:
    clock = Timeline()
    store = MemoryTimeline(clock.now)
    limiter = SharedRateLimiter(10.0, store, clock=clock.now, sleep=clock.sleep)

    grants = await grant_times(limiter, clock, 12)

    expected: list[tuple[str, int, object]] = [("keap", 12, pytest.approx(0.1))]
    assert store.calls == expected
    assert limiter.round_trips == 1
    assert grants == pytest.approx([i * 0.1 for i in range(12)])


async def test_requests_arriving_during_a_round_trip_join_the_next_one() -> None:
    clock = Timeline()
    store = MemoryTimeline(clock.now)
    store.gate = asyncio.Event()
    limiter = SharedRateLimiter(4.0, store, clock=clock.now, sleep=clock.sleep)

    first = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(limiter.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(first, *later)

    assert [count for _, count, _ in store.calls] == [1, 5]
    assert clock.now() == pytest.approx(5 * 0.25)


async def test_batches_are_capped() -> None:
    clock = Timeline()
    store = MemoryTimeline(clock.now)
    limiter = SharedRateLimiter(100.0, store, max_batch=4, clock=clock.now, sleep=clock.sleep)

    grants = await grant_times(limiter, clock, 10)

    assert [count for _, count, _ in store.calls] == [4, 4, 2]
    assert all(b - a == pytest.approx(0.01) for a, b in pairwise(sorted(grants)))


async def test_an_idle_process_reserves_nothing() -> None:
    clock = Timeline()
    store = MemoryTimeline(clock.now)
    limiter = SharedRateLimiter(10.0, store, clock=clock.now, sleep=clock.sleep)

    await limiter.acquire()
    await asyncio.sleep(0.01)

    assert limiter.round_trips == 1
    assert store.next_free == pytest.approx(0.1)


async def test_low_throttle_headers_take_wider_slots_from_the_shared_timeline() -> None:
    clock = FakeClock()
    store = MemoryTimeline(clock.now)
    limiter = SharedRateLimiter(10.0, store, clock=clock.now, sleep=clock.sleep)

    limiter.observe({"x-keap-product-throttle-available": "5"})
    await limiter.acquire()

    assert store.calls[-1][2] == pytest.approx(1 / (10.0 * 0.1))
    assert store.next_free - clock.now() == pytest.approx(1.0)


async def test_a_store_failure_reaches_every_waiter_and_the_next_request_retries() -> None:
    clock = Timeline()
    store = MemoryTimeline(clock.now)
    store.failure = StoreUnavailableError("the PostgreSQL store at db:5432/x failed")
    limiter = SharedRateLimiter(10.0, store, clock=clock.now, sleep=clock.sleep)

    outcomes = await asyncio.gather(*(limiter.acquire() for _ in range(3)), return_exceptions=True)

    assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
    store.failure = None
    await limiter.acquire()
    assert limiter.round_trips == 2


async def test_a_cancelled_request_does_not_stall_the_others() -> None:
    clock = Timeline()
    store = MemoryTimeline(clock.now)
    limiter = SharedRateLimiter(10.0, store, clock=clock.now, sleep=clock.sleep)

    doomed = asyncio.ensure_future(limiter.acquire())
    kept = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    doomed.cancel()
    await kept

    assert doomed.cancelled()


async def test_the_client_paces_through_the_shared_limiter(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient], clock: FakeClock
) -> None:
    store = MemoryTimeline(clock.now)
    store.next_free = clock.now() + 2.0  # other replicas hold the next two seconds
    limiter = SharedRateLimiter(5.0, store, clock=clock.now, sleep=clock.sleep)
    client = make_client(limiter=limiter)
    keap.get("/contacts/101").respond(200, json={"id": 101, "given_name": "Jane"})

    for _ in range(3):
        await client.get_contact("101")
    await client.aclose()

    assert clock.sleeps == pytest.approx([2.0, 0.2, 0.2])


# --- real stores, real clock ----------------------------------------------------------------

RATE = 40.0
PER_REPLICA = 30
REPLICAS = 3


async def test_replicas_on_one_store_stay_under_the_ceiling_together(database_url: str) -> None:
    """Three limiters, each with its own store connection, all at full demand at once.

    Alone, each would go at ``RATE``; together they must take three times as long.
    """
    stores = [await open_store(database_url, migrate=True) for _ in range(REPLICAS)]
    limiters = [SharedRateLimiter(RATE, store) for store in stores]
    grants: list[float] = []

    async def request(limiter: SharedRateLimiter) -> None:
        await limiter.acquire()
        grants.append(time.time())

    try:
        await asyncio.gather(*(request(lim) for lim in limiters for _ in range(PER_REPLICA)))
    finally:
        for store in stores:
            await store.close()
    grants.sort()
    total = REPLICAS * PER_REPLICA
    assert grants[-1] - grants[0] >= (total - 1) / RATE * 0.97
    assert max_in_one_second(grants) <= RATE + 2  # a late wake-up may bunch one or two
    assert sum(lim.round_trips for lim in limiters) < total / 4


def max_in_one_second(times: list[float]) -> int:
    """The most requests in any one-second window starting at a request."""
    best, tail = 0, 0
    for head, start in enumerate(times):
        tail = max(tail, head)
        while tail < len(times) and times[tail] < start + 1.0:
            tail += 1
        best = max(best, tail - head)
    return best
