"""Row 8: the disk holding the database fills up while callbacks arrive, then space returns."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.sandbox import RunningSandbox
from connector.store import EventStatus
from tests.fixtures_connector import Connector
from tests.reliability.conftest import Figures, Sender

pytestmark = pytest.mark.slow

TMPFS_SIZE = "8m"
PAD = "x" * 8000  # Keap sends what the HTTP Post lists; a big body fills the disk sooner
BEFORE = 20
MAX_WHILE_FULL = 400
REFUSALS_WANTED = 20
AFTER = 20
STAY_FULL_SECONDS = 3.0


class FullDisk:
    """A small tmpfs of its own for the database, and a filler file that takes its free space."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.filler = mountpoint / "filler"

    def fill(self) -> int:
        """Write until ENOSPC, in ever smaller pieces, so not one page of space is left."""
        written = 0
        fd = os.open(self.filler, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        written += os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullDisk]:
    """A dedicated tmpfs, unmounted whatever happens (lazily if a process still holds it)."""
    mountpoint = tmp_path_factory.mktemp("tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (root is needed): {mounted.stderr.strip()}")
    try:
        yield FullDisk(mountpoint)
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


@pytest.mark.parametrize("sandbox", [{"contacts": BEFORE + MAX_WHILE_FULL + AFTER}], indirect=True)
def test_disk_full_at_ingest_answers_503_and_recovers(
    full_disk: FullDisk, connector: Connector, sandbox: RunningSandbox, figures: Figures
) -> None:
    """Nothing is acknowledged that was not stored; nothing is corrupted; space back, work on.

    How the disk fills: the database lives on its own 8 MiB tmpfs (we run as root, so
    ``mount -t tmpfs`` works without touching any real filesystem), and a filler file takes
    every free byte, so SQLite gets ENOSPC exactly as on a full disk. Deleting the filler gives
    the space back; the fixture unmounts in all cases. A slow Keap keeps the in-process worker
    busy when the disk fills, so its writes fail too: the process must keep serving (503s),
    not exit, and finish those events once space returns.
    """
    db = full_disk.mountpoint / "connector.db"
    connector.env["CONNECTOR_DATABASE_URL"] = f"sqlite:///{db}"
    connector.env["CONNECTOR_LEASE_SECONDS"] = "3"  # events whose end could not be recorded
    assert connector.run("db", "migrate").returncode == 0
    sandbox.set_faults(latency_ms=100)  # the worker is still busy when the disk fills
    served = connector.serve()
    contacts = iter(sandbox.state.contact_ids)
    acknowledged: dict[int, int] = {}
    statuses: list[int] = []
    sender = Sender(served.url)
    try:

        def post() -> int:
            cid = next(contacts)
            reply = sender.post("hard_bounce", f"contactId={cid}&pad={PAD}")
            statuses.append(reply.status_code)
            if reply.status_code == 202:
                acknowledged[cid] = int(reply.json()["event_id"])
            return reply.status_code

        assert [post() for _ in range(BEFORE)] == [202] * BEFORE
        filled = full_disk.fill()
        refused = 0
        for _ in range(MAX_WHILE_FULL):
            code = post()
            assert code in (202, 503), code
            refused += code == 503
            if refused >= REFUSALS_WANTED:
                break
        assert refused >= REFUSALS_WANTED, f"the full disk never refused a callback: {statuses}"
        time.sleep(STAY_FULL_SECONDS)
        assert served.process.poll() is None, served.log.read_text()[-3000:]
        check_while_full = integrity(db)

        full_disk.free()
        time.sleep(1)
        after = [post() for _ in range(AFTER)]
    finally:
        sender.close()

    events = connector.wait_until_settled(len(acknowledged), timeout=120)
    stored = {int(e.contact_id or 0): e.id for e in events}
    log = served.log.read_text()
    figures(
        callbacks=len(statuses),
        acknowledged_202=statuses.count(202),
        refused_503=statuses.count(503),
        filler_bytes=filled,
        stored=len(events),
        done=sum(e.status is EventStatus.DONE for e in events),
        dead=sum(e.status is EventStatus.DEAD for e in events),
        integrity=integrity(db),
    )
    assert after == [202] * AFTER, "ingest recovers once space returns, without a restart"
    assert stored == acknowledged, "every 202 is a stored event, and only those are"
    assert check_while_full == "ok"
    assert integrity(db) == "ok"
    assert all(e.status is EventStatus.DONE for e in events)
    assert "Traceback" not in log, log[-3000:]
    assert "the store failed; the worker retries" in log, "the worker met the full disk too"
    assert "the store answers again; the worker resumes" in log
