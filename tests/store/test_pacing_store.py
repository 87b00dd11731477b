"""The shared send timeline (``reserve_send_slots``), on both backends.

Replicas share Keap's rate limit through it, so what matters is that no two reservations ever
overlap, whichever store object, process or host asks, and that an idle timeline never lends
its unused past out as a burst.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap
from itertools import pairwise

import pytest

from connector.store import Store, open_store
from tests.fixtures_store import FakeClock

T0 = FakeClock().now
Span = tuple[float, float]


def assert_disjoint(spans: list[Span]) -> None:
    """Reserved spans, sorted by start, each begin at or after the previous one's end."""
    ordered = sorted(spans)
    for (_, end), (start, _) in pairwise(ordered):
        assert start >= end - 1e-6, f"overlap: {start} < {end}"


async def test_an_idle_timeline_starts_now_and_reservations_follow(
    store: Store, clock: FakeClock
) -> None:
    assert await store.reserve_send_slots("keap", 5, 0.1) == pytest.approx(T0)
    assert await store.reserve_send_slots("keap", 1, 0.1) == pytest.approx(T0 + 0.5)
    assert await store.reserve_send_slots("keap", 2, 0.25) == pytest.approx(T0 + 0.6)
    clock.advance(0.3)
    assert await store.reserve_send_slots("keap", 1, 0.1) == pytest.approx(T0 + 1.1)


async def test_unused_time_is_not_lent_out_as_a_burst(store: Store, clock: FakeClock) -> None:
    await store.reserve_send_slots("keap", 1, 0.1)
    clock.advance(60)
    first = await store.reserve_send_slots("keap", 10, 0.1)
    assert first == pytest.approx(T0 + 60)
    assert await store.reserve_send_slots("keap", 1, 0.1) == pytest.approx(T0 + 61)


async def test_timelines_are_independent(store: Store) -> None:
    await store.reserve_send_slots("keap", 100, 1.0)
    assert await store.reserve_send_slots("other", 1, 1.0) == pytest.approx(T0)


@pytest.mark.parametrize(("count", "interval"), [(0, 0.1), (-1, 0.1), (1, 0.0), (1, -1.0)])
async def test_nonsense_reservations_are_refused(store: Store, count: int, interval: float) -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        await store.reserve_send_slots("keap", count, interval)


async def test_concurrent_reservers_on_separate_stores_never_overlap(
    database_url: str, clock: FakeClock
) -> None:
    """Four store objects (as four processes would open them), 50 concurrent calls each."""
    rng = random.Random(9)
    stores = [await open_store(database_url, clock=clock, migrate=True) for _ in range(4)]
    try:
        wanted = [(s, rng.randint(1, 8), rng.choice([0.01, 0.02, 0.05])) for s in stores * 50]
        firsts = await asyncio.gather(
            *(s.reserve_send_slots("keap", n, gap) for s, n, gap in wanted)
        )
    finally:
        for opened in stores:
            await opened.close()
    spans = [(f, f + n * gap) for f, (_, n, gap) in zip(firsts, wanted, strict=True)]
    assert_disjoint(spans)
    total = sum(n * gap for _, n, gap in wanted)
    assert max(end for _, end in spans) == pytest.approx(T0 + total)


RESERVE_IN_A_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from connector.store import open_store

    async def main(url: str, rounds: int) -> None:
        store = await open_store(url)
        spans = []
        for index in range(rounds):
            count = 1 + index % 4
            first = await store.reserve_send_slots("keap", count, 0.001)
            spans.append((first, first + count * 0.001))
        await store.close()
        print(json.dumps(spans))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_processes_reserving_at_once_never_overlap(database_url: str) -> None:
    """Real processes on the real clock: the backend's own locking keeps their spans apart."""
    migrate = subprocess.run(
        [sys.executable, "-m", "connector", "db", "migrate"],
        env={"CONNECTOR_DATABASE_URL": database_url, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RESERVE_IN_A_PROCESS, database_url, "60"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    spans: list[Span] = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        spans += [(start, end) for start, end in json.loads(out)]
    assert len(spans) == 240
    assert_disjoint(spans)
