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
class _Batch:
    contact_ids: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.contact_ids) >= TAG_BATCH_SIZE


class TagBatcher:
    """Coalesces "apply tag T to contact C" from concurrent events into one call per tag.

    Keap v2 applies one tag to many contacts per call, and tags are the only write Keap lets
    contacts share, so every shared call is quota saved. A batch stays open until its call's
    turn at the rate limiter comes: when Keap's throttle makes events wait seconds, every tag
    write made while the batch waits joins it (up to Keap's 100 ids a call), and no event waits
    longer than its own turn at the limiter would have made it. ``delay`` is a short gather
    before the batch even asks for its turn, for clients that are never limited.
    """

    def __init__(self, client: KeapClient, delay: float = 0.05) -> None:
        self._client = client
        self._delay = delay
        self._open: dict[tuple[str, str], _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, op: str, tag_id: str, contact_id: str) -> None:
        key = (op, tag_id)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Batch()
            task = asyncio.ensure_future(self._send(key, batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.contact_ids.append(contact_id)
        batch.waiters.append(future)
        if batch.full:
            self._close(key, batch)
        await future

    def _close(self, key: tuple[str, str], batch: _Batch) -> None:
        """No more joins: later writes of this tag open the next batch."""
        if self._open.get(key) is batch:
            del self._open[key]

    async def _send(self, key: tuple[str, str], batch: _Batch) -> None:
        op, tag_id = key
        try:
            await asyncio.sleep(self._delay)
            await self._client.wait_turn()
            self._close(key, batch)
            call = self._client.apply_tag if op == "add" else self._client.remove_tag
            await call(tag_id, sorted(set(batch.contact_ids)), turn_taken=True)
        except BaseException as exc:  # every waiter must learn the outcome, whatever it is
            self._close(key, batch)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
