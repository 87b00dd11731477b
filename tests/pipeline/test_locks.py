"""ContactLocks: events of one contact take turns; events of different contacts do not wait."""

from __future__ import annotations

import asyncio

from connector.pipeline.run import ContactLocks


async def test_one_contact_at_a_time_others_in_parallel() -> None:
    locks = ContactLocks()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("7"):
            order.append("first in")
            inside.set()
            await release.wait()
            order.append("first out")

    async def same() -> None:
        await inside.wait()
        async with locks.hold("7"):
            order.append("same contact in")

    async def other() -> None:
        await inside.wait()
        async with locks.hold("8"):
            order.append("other contact in")
        release.set()

    await asyncio.gather(first(), same(), other())
    assert order == ["first in", "other contact in", "first out", "same contact in"]


async def test_locks_are_forgotten_when_nobody_holds_them() -> None:
    locks = ContactLocks()
    for key in map(str, range(100)):
        async with locks.hold(key):
            pass
    async with locks.hold("x"):
        assert locks.held() == {"x"}
    assert locks.held() == set()
