"""Issue 13, item 4: the SQLite file deleted, moved or replaced while ``serve`` runs.

291 callbacks after a delete got 202, ``/readyz`` said ready, nothing was logged, and every one
was gone after a restart. Now a store whose file is no longer the file at its path answers 503,
fails ``/readyz``, logs one error, and acknowledges nothing a restart would not find.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures_connector import Connector, Serve

pytestmark = pytest.mark.slow

BEFORE = 5
AFTER = 30


def post(served: Serve, i: int) -> httpx.Response:
    return served.post("/keap/bounce/hard_bounce", f"contactId={1000 + i}")


def readyz_until(served: Serve, status: int, timeout: float = 15) -> httpx.Response:
    """``/readyz`` polled (bounded) until it answers ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(f"{served.url}/readyz", timeout=10)
        if reply.status_code == status or time.monotonic() > deadline:
            assert reply.status_code == status, reply.text
            return reply
        time.sleep(0.1)


def copy_of(db: Path) -> Path:
    """A consistent copy of the live database (SQLite's backup API), beside it."""
    copy = db.with_name("restored.db")
    with (
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)
    return copy


def lose(db: Path, how: str) -> None:
    if how == "deleted":
        db.unlink()
    elif how == "moved":
        db.rename(db.with_name("elsewhere.db"))
    else:  # replaced: a restore from backup over the running process's file
        os.replace(copy_of(db), db)


@pytest.mark.parametrize("how", ["deleted", "moved", "replaced"])
def test_issue13_item4_a_lost_database_file_is_503_and_not_ready(
    connector: Connector, how: str
) -> None:
    served = connector.serve("--no-worker")
    acknowledged = []
    for i in range(BEFORE):
        reply = post(served, i)
        assert reply.status_code == 202, reply.text
        acknowledged.append(reply.json()["event_id"])
    assert httpx.get(f"{served.url}/readyz", timeout=10).status_code == 200

    lose(connector.database, how)
    answers = [post(served, BEFORE + i) for i in range(AFTER)]
    assert {r.status_code for r in answers} == {503}, [r.status_code for r in answers]
    ready = readyz_until(served, 503)  # /readyz checks the store at most every 2 s
    assert str(connector.workdir) not in ready.text, "no path in /readyz"
    assert "connector.db" not in ready.text

    if how == "moved":  # the same file comes back: the store works again, no restart needed
        connector.database.with_name("elsewhere.db").rename(connector.database)
        again = post(served, 999)
        assert again.status_code == 202, again.text
        acknowledged.append(again.json()["event_id"])
        readyz_until(served, 200)

    served.stop()
    log = served.log.read_text()
    assert log.count("while this process had it open") == 1, log
    assert "Traceback" not in log

    if how == "deleted":
        return  # the operator deleted the events; nothing after the delete was acknowledged
    stored = {e.id for e in connector.events()}
    assert set(acknowledged) <= stored, "a restart finds every 202'd event"
    assert len(stored) == len(acknowledged)
