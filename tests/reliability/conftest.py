"""The failure matrix's shared pieces, built on the e2e fixtures that run the real processes.

``connector`` (a migrated install pointed at the sandbox) and ``oauth`` (the same, signed in with
OAuth2 instead of an API key) come from ``tests/e2e``; this file adds what every row needs on top:
a keep-alive callback sender, a background ``connector`` process that is not ``serve``, the tally
of events and notes that says "done exactly once", and ``figures``, which prints each row's
one-line summary and appends it to ``reliability-figures.jsonl`` in pytest's base temporary
directory, so RELIABILITY.md quotes measured numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.store import Event, EventStatus
from tests.e2e.test_auth_e2e import oauth
from tests.e2e.test_serve_e2e import new_contact, note_markers
from tests.fixtures_connector import WEBHOOK_SECRET, Connector, connector

__all__ = [
    "Figures",
    "Process",
    "Sender",
    "Tally",
    "assert_note_once_per_event",
    "connector",
    "new_contact",
    "note_markers",
    "oauth",
    "tally",
]

FIGURES_FILE = "reliability-figures.jsonl"
FORM = {"content-type": "application/x-www-form-urlencoded"}

Figures = Callable[..., None]


@pytest.fixture
def figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Figures:
    """``figures(sent=..., done=...)``: one printed line and one JSON record for the row."""

    def record(**values: Any) -> None:
        shown = ", ".join(f"{name}={value}" for name, value in values.items())
        print(f"\nFIGURES {request.node.name}: {shown}")
        path = tmp_path_factory.getbasetemp() / FIGURES_FILE
        with path.open("a") as out:
            out.write(json.dumps({"test": request.node.nodeid, **values}) + "\n")

    return record


class Sender:
    """Posts Keap-style callbacks over one keep-alive connection (Keap's HTTP Post, many times)."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.client = httpx.Client(base_url=url, headers=FORM, timeout=timeout)

    def post(self, bounce: str, body: str, key: str = WEBHOOK_SECRET) -> httpx.Response:
        return self.client.post(f"/keap/bounce/{bounce}", params={"key": key}, content=body)

    def close(self) -> None:
        self.client.close()


@dataclass
class Process:
    """A background ``connector`` command (``worker``, ``sync``) with its stderr in a file."""

    process: subprocess.Popen[str]
    log: Path

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def spawn(connector: Connector) -> Iterator[Callable[..., Process]]:
    """Start ``connector <args>`` in the background; every one still running is stopped after."""
    started: list[Process] = []

    def start(*args: str) -> Process:
        log = connector.workdir / f"{args[0]}-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", *args],
            cwd=connector.workdir,
            env=connector.env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            text=True,
        )
        made = Process(process, log)
        started.append(made)
        return made

    yield start
    for made in started:
        made.stop()


@dataclass(frozen=True)
class Tally:
    """What happened to the events, counted the way the matrix states its guarantees."""

    events: int
    done: int
    dead: int
    open: int
    notes: int
    duplicated: int  # events with more than one note, plus notes naming no stored event

    def figures(self) -> dict[str, int]:
        return {
            "events": self.events,
            "done": self.done,
            "dead": self.dead,
            "duplicated": self.duplicated,
            "notes": self.notes,
        }


def tally(events: list[Event], markers: Counter[int]) -> Tally:
    ids = {e.id for e in events}
    statuses = Counter(e.status for e in events)
    twice = sum(1 for event_id, count in markers.items() if count > 1 or event_id not in ids)
    return Tally(
        events=len(events),
        done=statuses[EventStatus.DONE],
        dead=statuses[EventStatus.DEAD],
        open=len(events) - statuses[EventStatus.DONE] - statuses[EventStatus.DEAD],
        notes=sum(markers.values()),
        duplicated=twice,
    )


def assert_note_once_per_event(events: list[Event], markers: Counter[int]) -> None:
    """Each event's note exists exactly once: no event without one, none written twice."""
    missing = sorted({e.id for e in events} - set(markers))
    assert not missing, f"events without their note: {missing[:20]}"
    twice = {event_id: n for event_id, n in markers.items() if n != 1}
    assert not twice, f"notes written more than once (event: count): {twice}"
