"""Issue 13 item 17: ``sync --limit 5`` after an interrupted run says what it finished from before.

An interrupted run leaves its findings queued. The next ``sync --limit 5`` drains that queue too
(the work is due, and the same worker does it), and used to report it all as its own:
"remediated 368" for a limit of 5. Now ``--limit`` bounds the work this run queues, and the summary
counts the two apart: "remediated 5 new of limit 5" and "finished 30 queued by an earlier run".
"""

from __future__ import annotations

import io
import socket

from connector.cli.sync_view import print_summary
from connector.store import NewEvent
from connector.sync import SYNC_NAME, Checkpoint
from connector.sync.scan import episode_key
from tests.sync.accounts import Account, with_store
from tests.sync.conftest import account

__all__ = ["account"]

EARLIER = 30


async def test_item17_sync_limit_after_an_interrupted_run_counts_earlier_work_apart(
    account: Account,
) -> None:
    hard = sorted(k for k, s in account.bounced().items() if s == "HARD_BOUNCE")[-EARLIER:]
    store = await with_store(account)
    try:
        for cid, email in hard:  # what an interrupted run had queued, not yet remediated
            key = episode_key(str(cid), email, "HARD_BOUNCE")
            await store.add_event(
                NewEvent("sync", "hard_bounce", str(cid), email, None, key, "{}"), None
            )
        dead_owner = f"{socket.gethostname()}:999999:abc"
        await store.save_checkpoint(
            SYNC_NAME, Checkpoint("contacts", None, None, dead_owner).dump()
        )
    finally:
        await store.close()

    summary = await account.sync(limit=5)

    assert summary.limit_reached
    assert summary.queued == 5, "--limit bounds what this run queues"
    assert summary.remediated == 5, "the new work, and only it"
    assert summary.earlier_remediated == EARLIER
    err = io.StringIO()
    print_summary(summary, err)
    text = err.getvalue()
    assert "remediated 5 new of limit 5" in text
    assert f"finished {EARLIER} queued by an earlier run" in text
    assert summary.left_queued == 0
