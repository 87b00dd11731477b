"""Tag writes shared between events: Keap v2 applies one tag to many contacts per call.

Tags are the only write Keap lets several contacts share, so every tag step goes through one
batcher per worker and events processed together (a burst of callbacks, a sync page) share calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from connector.keap.client import KeapClient

TAG_BATCH_SIZE = 100


@dataclass
class _Pending:
    contact_ids: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class TagBatcher:
    """Coalesces "apply tag T to contact C" from concurrent events into one call per tag.

    Keap v2 applies one tag to many contacts per call; events processed together (a burst of
    callbacks, a sync page) each wait a few milliseconds so their tag writes share calls.
    """

    def __init__(self, client: KeapClient, delay: float = 0.05) -> None:
        self._client = client
        self._delay = delay
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, op: str, tag_id: str, contact_id: str) -> None:
        key = (op, tag_id)
        batch = self._pending.setdefault(key, _Pending())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.contact_ids.append(contact_id)
        batch.waiters.append(future)
        if len(batch.contact_ids) >= TAG_BATCH_SIZE:
            self._flush_soon(key, 0.0)
        elif batch.timer is None:
            batch.timer = asyncio.get_running_loop().call_later(
                self._delay, self._flush_soon, key, 0.0
            )
        await future

    def _flush_soon(self, key: tuple[str, str], _: float) -> None:
        batch = self._pending.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.ensure_future(self._flush(key, batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, key: tuple[str, str], batch: _Pending) -> None:
        op, tag_id = key
        call = self._client.apply_tag if op == "add" else self._client.remove_tag
        try:
            await call(tag_id, sorted(set(batch.contact_ids)))
        except BaseException as exc:  # every waiter must learn the outcome, whatever it is
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
