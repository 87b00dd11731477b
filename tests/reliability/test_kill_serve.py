"""Row 4: ``connector serve`` is SIGKILLed at random points, 5 times, while 300 callbacks arrive."""

from __future__ import annotations

import os
import random
import threading
import time

import httpx
import pytest

from connector.sandbox import RunningSandbox
from connector.store import EventStatus
from tests.fixtures_connector import Connector, Serve
from tests.reliability.conftest import (
    Figures,
    Sender,
    assert_note_once_per_event,
    new_contact,
    note_markers,
    tally,
)

pytestmark = pytest.mark.slow

CALLBACKS = 300
KILLS = 5
PACE_SECONDS = 1 / 40  # callbacks keep arriving across all the kills


class Poster(threading.Thread):
    """Keap's side: posts each callback until it is acknowledged, whichever server is up.

    A callback whose answer was lost to a kill is posted again; if it had been stored, the
    dedupe window answers ``duplicate`` with the same event, so a resend never adds work.
    """

    def __init__(self, contacts: list[int], current: list[Serve]) -> None:
        super().__init__(daemon=True)
        self.contacts = contacts
        self.current = current
        self.resent = 0
        self.event_ids: dict[int, int] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for cid in self.contacts:
                self.event_ids[cid] = self._deliver(cid)
                time.sleep(PACE_SECONDS)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def _deliver(self, cid: int) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sender = Sender(self.current[-1].url, timeout=5)
            try:
                reply = sender.post("unsubscribe_request", f"contactId={cid}")
                if reply.status_code == 202:
                    return int(reply.json()["event_id"])
            except httpx.TransportError:
                pass
            finally:
                sender.close()
            self.resent += 1
            time.sleep(0.05)
        raise AssertionError(f"callback for contact {cid} never acknowledged")


def test_serve_killed_5_times_during_300_callbacks(
    connector: Connector, sandbox: RunningSandbox, figures: Figures
) -> None:
    """Every callback ends done exactly once though the process holding it died mid-flight.

    A kill can land between Keap's write and the audit record; the restarted server takes the
    dead one's leases over after ``CONNECTOR_LEASE_SECONDS`` (3 s here) and finishes from the
    audit log, looking for notes whose answers it never saw. The kill times are random; the
    seed is in the figures (``RELIABILITY_SEED`` replays a run).
    """
    seed = int(os.environ.get("RELIABILITY_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    connector.env["CONNECTOR_LEASE_SECONDS"] = "3"
    sandbox.set_faults(latency_ms=15)  # Keap's own latency: a kill finds calls in flight
    contacts = [new_contact(sandbox, f"kill{i}@example.com") for i in range(CALLBACKS)]
    current = [connector.serve()]
    poster = Poster(contacts, current)
    poster.start()
    open_at_kill: list[int] = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 2.5))
        current[-1].kill()
        events = connector.events()
        open_at_kill.append(sum(1 for e in events if e.status is not EventStatus.DONE))
        current.append(connector.serve())
    poster.join(timeout=120)
    assert poster.error is None, poster.error
    assert not poster.is_alive()

    events = connector.wait_until_settled(CALLBACKS, timeout=180)

    markers = note_markers(sandbox)
    counted = tally(events, markers)
    figures(
        seed=seed,
        sent=CALLBACKS,
        resent=poster.resent,
        kills=KILLS,
        open_at_kills=open_at_kill,
        **counted.figures(),
    )
    assert sum(open_at_kill) > 0, f"no kill landed while events were open (seed {seed})"
    assert (counted.events, counted.done, counted.dead) == (CALLBACKS, CALLBACKS, 0), seed
    assert sorted(e.id for e in events) == sorted(poster.event_ids.values())
    assert_note_once_per_event(events, markers)
    addresses = [sandbox.state.address(f"kill{i}@example.com") for i in range(CALLBACKS)]
    assert all(a is not None and a.status == "MANUAL" for a in addresses)
