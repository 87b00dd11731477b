"""``connector demo`` run to completion as a user runs it, then checked against what it left.

The demo reports numbers it read from the store and the simulator; this test reads the store
again after the demo has exited, rebuilds the simulator's seeded backlog from the same options,
and checks that the demo left no process or port behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connector import demo, policy
from connector.bounces import BounceCategory, BounceType
from connector.sandbox import start_sandbox
from connector.store import StepStatus

pytestmark = pytest.mark.slow


def demo_command(workdir: Path) -> list[str]:
    """``connector demo`` exactly as ``scripts/demo`` runs it."""
    return [sys.executable, "-m", "connector", "demo", "--workdir", str(workdir)]


def children() -> set[int]:
    """Live child processes of this test process, from /proc (no psutil needed)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def serve_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return b"serve" in cmdline and b"connector" in cmdline


def seeded_backlog() -> Counter[str]:
    """Bounce types ``sync`` must find: every contact's address in a mapped status, as seeded."""
    rules = policy.default_policy()
    found: Counter[str] = Counter()
    with start_sandbox(demo.DEMO_SANDBOX) as sandbox:
        state = sandbox.state
        for contact in state.contacts.values():
            for _, email in contact.emails:
                address = state.address(email)
                mapped = rules.bounce_type_for_status(address.status) if address else None
                if mapped is not None:
                    found[mapped.value] += 1
    return found


def planned_duplicates() -> int:
    stories = sum(
        s.contacts * sum(len(types) for types in s.rounds) for s in demo.STORIES if s.duplicate
    )
    return stories + len(demo.DUPLICATED_ONE_OFFS)


def _soft(story: demo.Story) -> list[BounceType]:
    return [t for types in story.rounds for t in types if t.category is BounceCategory.SOFT]


def planned_opt_outs() -> tuple[int, int]:
    """(third strikes, all opt-outs) the default policy must make of the demo's stream."""
    strikes = sum(
        s.contacts
        for s in demo.STORIES
        if sum(t.count(BounceType.HARD_BOUNCE) for t in s.rounds) >= 3
    )
    soft = sum(s.contacts for s in demo.STORIES if len(_soft(s)) > 4)
    return strikes, strikes + soft + demo.ONE_OFFS[BounceType.UNSUBSCRIBE_REQUEST]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """The demo run once to completion in a temporary directory: (workdir, summary, output)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    workdir = tmp_path / "demo-run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))}
    env["CONNECTOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'users-own.db'}"  # must be ignored
    before = children()
    started = time.monotonic()
    done = subprocess.run(
        demo_command(workdir), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    print(f"demo took {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert children() <= before, "the demo left a child process"
    assert not (tmp_path / "users-own.db").exists()
    summary = json.loads((workdir / demo.SUMMARY_FILE).read_text())
    return workdir, summary, done.stdout


def test_demo_summary_matches_the_store_and_the_seeded_account(
    finished: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, _ = finished
    events, audit = demo.read_store(summary["database_url"])
    by_source: dict[str, Counter[str]] = {}
    for event in events:
        by_source.setdefault(event.source, Counter())[event.bounce_type] += 1
    assert summary["events"] == {source: dict(c) for source, c in by_source.items()}
    assert summary["event_statuses"] == {"done": len(events)}
    done = [a for a in audit if a.status is StepStatus.DONE and not a.dry_run]
    assert summary["actions"] == dict(Counter(a.kind for a in done))

    assert set(by_source["webhook"]) == {t.value for t in BounceType}
    assert by_source["sync"] == seeded_backlog()
    assert summary["answered"] == {
        "queued": sum(by_source["webhook"].values()),
        "duplicate": planned_duplicates(),
    }
    assert summary["duplicates_sent"] == planned_duplicates()


def test_demo_applies_the_default_policy_in_keap(
    finished: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, _ = finished
    strikes, opt_outs = planned_opt_outs()
    assert summary["actions"]["opt_out"] == opt_outs
    assert summary["keap"]["opted_out"] == opt_outs  # all were marketable addresses
    assert summary["keap_tags"]["Third Strike"] == strikes
    assert summary["actions"]["task"] == summary["keap"]["tasks"] == strikes
    assert summary["keap"]["notes"] == summary["actions"]["note"]
    assert summary["spec_violations"] == 0
    assert summary["throttled"] == 0
    assert summary["api_calls"]["total"] >= summary["api_calls"]["webhook"] > 0


def test_demo_leaves_nothing_running_and_its_advice_works(
    finished: tuple[Path, dict[str, Any], str],
) -> None:
    workdir, summary, output = finished
    assert not serve_alive(summary["serve_pid"])
    assert port_closed(summary["serve_port"])
    assert port_closed(summary["sandbox_port"])
    assert f"export CONNECTOR_DATABASE_URL={summary['database_url']}" in output
    assert "Where to look next" in output
    page = Path(summary["report_page"])
    assert page.parent == workdir
    assert "Needs a person" in page.read_text()
    assert f"The report page for the person who cleans the list: {page}" in output
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))}
    env["CONNECTOR_DATABASE_URL"] = summary["database_url"]
    report = subprocess.run(
        [sys.executable, "-m", "connector", "report", "--since", "1d", "--format", "json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    totals = json.loads(report.stdout)["totals"]
    assert totals["by_action"]["opt_out"] == planned_opt_outs()[1]
