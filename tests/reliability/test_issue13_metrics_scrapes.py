"""Issue 13, item 6: ``/metrics`` never runs a store query per scrape, nor makes callbacks wait.

Each scrape ran a ``GROUP BY`` on the store thread; 64 clients scraping a store of a million
events pushed callback p50 to 4.6 s. The queue gauges are now refreshed in the background at
most once per interval, and scrapes read the cached values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import httpx

from connector.metrics import QUEUE_REFRESH_SECONDS, Metrics
from connector.store import QueueStats, Store
from connector.webhook import WebhookConfig, create_app
from tests.fixtures_store import FakeClock

SECRET = "metrics-scrape-key-0123"
FORM = {"content-type": "application/x-www-form-urlencoded"}


class CountingStats:
    """Wraps ``queue_stats``: counts calls, and can hold them until released."""

    def __init__(self, store: Store) -> None:
        self.inner = store.queue_stats
        self.calls = 0
        self.finished = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> QueueStats:
        self.calls += 1
        await self.gate.wait()
        try:
            return await self.inner()
        finally:
            self.finished += 1


async def settle(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until ``condition()`` holds (bounded; no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_issue13_item6_scrapes_query_the_store_at_most_once_per_interval(
    store: Store,
) -> None:
    clock = FakeClock(100.0)
    counting = CountingStats(store)
    store.queue_stats = counting  # type: ignore[method-assign]  # counts the store's calls
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics(), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        await c.post(f"/keap/bounce/hard_bounce?key={SECRET}", content="contactId=1", headers=FORM)
        first = await c.get("/metrics")
        assert 'connector_queue_depth{status="queued"} 1.0' in first.text
        for _ in range(500):  # a flood of scrapes inside one interval
            assert (await c.get("/metrics")).status_code == 200
            clock.advance(QUEUE_REFRESH_SECONDS / 1000)
        assert counting.calls == 1

        intervals = 20
        for _ in range(intervals):
            clock.advance(QUEUE_REFRESH_SECONDS)
            await asyncio.gather(*(c.get("/metrics") for _ in range(64)))
            await settle(lambda: counting.finished == counting.calls)
        assert counting.calls <= 1 + intervals


async def test_issue13_item6_a_slow_store_query_never_holds_a_scrape_or_a_callback(
    store: Store,
) -> None:
    clock = FakeClock(100.0)
    counting = CountingStats(store)
    store.queue_stats = counting  # type: ignore[method-assign]  # counts the store's calls
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics(), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        await c.get("/metrics")  # the first scrape fills the gauges
        counting.gate.clear()  # from now on the store's answer hangs
        clock.advance(QUEUE_REFRESH_SECONDS)
        scrapes = await asyncio.wait_for(
            asyncio.gather(*(c.get("/metrics") for _ in range(64))), timeout=30
        )
        assert {r.status_code for r in scrapes} == {200}, "scrapes answer from the cache"
        callback = await asyncio.wait_for(
            c.post(f"/keap/bounce/hard_bounce?key={SECRET}", content="contactId=2", headers=FORM),
            timeout=30,
        )
        assert callback.status_code == 202
        assert counting.calls == 2, "one refresh in flight, however many scrapes"
        counting.gate.set()
