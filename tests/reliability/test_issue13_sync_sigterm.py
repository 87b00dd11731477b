"""Issue 13 item 5: seconds from SIGTERM to exit in each phase of ``connector sync``.

A real ``connector sync`` process against the sandbox, with Keap made slow (5 s a call) on the
calls of one phase, receives SIGTERM while such a call is in flight: during the strategy probes,
during the contact scan, and while findings are being remediated. Each run must stop (exit 130,
resumable) without waiting out the slow calls. The seconds are printed as figures for
RELIABILITY.md; no wall-clock assertion (a generous timeout only keeps a hang from blocking CI).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.sandbox import SandboxOptions
from tests.e2e.test_sync_e2e import ANCHOR_MS, install
from tests.fixtures_sandbox import SandboxFactory
from tests.reliability.conftest import Figures

pytestmark = pytest.mark.slow

ACCOUNT = SandboxOptions(
    contacts=3000,
    bounced_fraction=0.05,
    seed=13,
    requests_per_second=1000.0,
    data_anchor_ms=ANCHOR_MS,
)
SLOW_MS = 5000.0

Log = list[dict[str, Any]]


def _count(log: Log, operation: str, method: str = "GET") -> int:
    return sum(1 for e in log if e["operation"] == operation and e["method"] == method)


PHASES: dict[str, tuple[tuple[str, ...], dict[str, Any], Callable[[Log], bool]]] = {
    # auto: the highest-id probe answers, then the bounced-address count hangs
    "probe": (
        ("--strategy", "auto"),
        {"latency_ms": SLOW_MS, "method": "GET", "path": r"/emailAddresses"},
        lambda log: _count(log, "listContacts") >= 1,
    ),
    # contacts: the size probe and the first page answer, the next page hangs
    "scan": (
        ("--strategy", "contacts"),
        {"latency_ms": SLOW_MS, "method": "GET", "path": r"/contacts$"},
        lambda log: _count(log, "listContacts") >= 2,
    ),
    # remediation: every write to Keap hangs; stop once one has landed
    "remediation": (
        ("--strategy", "contacts"),
        {"latency_ms": SLOW_MS, "method": "POST"},
        lambda log: any(e["method"] == "POST" for e in log),
    ),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_item5_sync_stops_within_seconds_of_sigterm_in_each_phase(
    sandbox_factory: SandboxFactory, tmp_path: Path, figures: Figures, phase: str
) -> None:
    args, fault, reached = PHASES[phase]
    sandbox = sandbox_factory(ACCOUNT)
    made = install(sandbox, tmp_path / phase, rate="1000")
    sandbox.set_faults(**fault)
    process = made.start(*args)
    deadline = time.monotonic() + 120
    while not reached(sandbox.stats()["log"]):  # bounded polling on the sandbox's log
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"the sync never reached its {phase} phase"
        time.sleep(0.02)
    time.sleep(0.2)  # let the slow call of the phase be sent (it takes SLOW_MS to answer)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    seconds = time.monotonic() - sent
    figures(phase=phase, sigterm_to_exit_s=round(seconds, 2), slow_call_s=SLOW_MS / 1000)
    assert process.returncode == 130, err
    assert "stopped early; the next run resumes" in err, err
