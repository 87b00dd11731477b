"""Keap calls per remediated webhook event, and pacing against Keap's throttle (DESIGN 9).

Run: .venv/bin/python scripts/bench_webhook_calls.py [--events 150] [--keap-rate 5]

The sandbox runs in its own process with its throttle at Keap's key rate; ``connector serve``
runs in another, with the built-in worker. A burst of hard-bounce callbacks is posted at once;
the policy opts the address out, writes a note and adds a tag (the floor is 3 calls per event:
read the contact, opt out, note; tag writes are the only ones Keap lets events share). Calls and
429s are counted by the sandbox (``/_sandbox/stats``), never by the client. Two runs:

1. the client told Keap's real rate: calls per event (goal: at most 3.1);
2. the client told 4x Keap's rate: achieved requests/s over the ceiling (goal: at least 0.9)
   and the share of requests answered 429 (goal: at most 2 %).

Every event must end done exactly once (one opt-out and one note per contact in the sandbox).
Figures are printed, never asserted in tests: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

KEY = "KeapAK-bench-webhook-0123456789abcdef"
SECRET = "bench-webhook-secret-0123456789abcdef"
POLICY = """
[[rule]]
bounce = "hard_bounce"
action = "opt_out"
add_tags = ["Bounced"]
note = true
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not start")


class Sandbox:
    def __init__(self, rate: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            *("-m", "connector", "sandbox", "--port", str(self.port), "--contacts", "1"),
            *("--requests-per-second", str(rate), "--seed", "1", "--api-key", KEY),
        ]
        self.process = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(f"{self.url}/_sandbox/stats?log=0", "the sandbox")

    def add_contacts(self, count: int) -> list[tuple[str, str]]:
        made = []
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for n in range(count):
                email = f"bench{n}@example.com"
                body = {
                    "given_name": "Bench",
                    "family_name": str(n),
                    "email_addresses": [{"field": "EMAIL1", "email": email}],
                }
                reply = http.post("/_sandbox/contacts", json=body)
                reply.raise_for_status()
                http.post(
                    "/_sandbox/email-status", json={"email": email, "status": "SINGLE_OPT_IN"}
                ).raise_for_status()
                made.append((str(reply.json()["id"]), email))
        return made

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_sandbox/stats?log=0", timeout=30).json())

    def state(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_sandbox/state", timeout=60).json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@dataclass
class Figures:
    label: str
    events: int
    done: int
    calls: int
    throttled: int
    seconds: float
    ceiling: float
    opted_out: int
    notes: int

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def line(self) -> str:
        return (
            f"{self.label:<34} {self.done}/{self.events} done  {self.calls:>5} calls "
            f"{self.calls / max(self.done, 1):5.2f}/event  "
            f"{self.rate:5.2f} req/s = {self.rate / self.ceiling:4.2f}"
            f" of the {self.ceiling:g}/s ceiling  429s {self.throttled} "
            f"({self.throttled / max(self.calls, 1):.1%})  opted out {self.opted_out}, "
            f"notes {self.notes}  "
            f"{self.seconds:5.1f}s"
        )


def run(label: str, events: int, keap_rate: float, client_rate: float) -> Figures:
    sandbox = Sandbox(keap_rate)
    try:
        contacts = sandbox.add_contacts(events)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            (workdir / "policy.toml").write_text(POLICY)
            port = free_port()
            env = {
                **{
                    k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))
                },
                "KEAP_API_BASE_URL": f"{sandbox.url}/crm",
                "KEAP_API_KEY": KEY,
                "KEAP_REQUESTS_PER_SECOND": str(client_rate),
                "CONNECTOR_DATABASE_URL": f"sqlite:///{workdir / 'connector.db'}",
                "CONNECTOR_POLICY_FILE": str(workdir / "policy.toml"),
                "CONNECTOR_WEBHOOK_SECRET": SECRET,
                "CONNECTOR_WORKER_CONCURRENCY": "64",
            }
            serve = subprocess.Popen(
                [sys.executable, "-m", "connector", "serve", "--port", str(port)],
                cwd=workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(workdir / "serve.log").open("wb"),
            )
            try:
                wait_for(f"http://127.0.0.1:{port}/healthz", "connector serve")
                before = sandbox.stats()
                started = time.monotonic()
                asyncio.run(post_burst(port, contacts))
                done = wait_done(workdir / "connector.db", events)
                seconds = time.monotonic() - started
                after = sandbox.stats()
            finally:
                serve.terminate()
                serve.wait(timeout=60)
        calls = sum(after["calls"].values()) - sum(before["calls"].values())
        throttled = int(after["statuses"].get("429", 0)) - int(before["statuses"].get("429", 0))
        state = sandbox.state()
        opted_out = int(state.get("statuses", {}).get("MANUAL", 0))
        notes = len(state.get("notes", []))
        return Figures(label, events, done, calls, throttled, seconds, keap_rate, opted_out, notes)
    finally:
        sandbox.stop()


async def post_burst(port: int, contacts: list[tuple[str, str]]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        replies = await asyncio.gather(
            *(
                http.post(
                    f"/keap/bounce/hard_bounce?key={SECRET}",
                    data={"contactId": cid, "Email": email},
                )
                for cid, email in contacts
            )
        )
    bad = [r.status_code for r in replies if r.status_code != 202]
    if bad:
        raise SystemExit(f"callbacks refused: {bad[:5]}")


def wait_done(db: Path, events: int) -> int:
    """Poll the store until every event has ended (done or dead)."""
    import sqlite3

    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            rows = dict(conn.execute("SELECT status, count(*) FROM events GROUP BY status"))
        if rows.get("done", 0) + rows.get("dead", 0) >= events:
            return int(rows.get("done", 0))
        time.sleep(0.25)
    raise SystemExit("the events did not finish in 30 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=150)
    parser.add_argument("--keap-rate", type=float, default=5.0)
    args = parser.parse_args()
    rate = args.keap_rate
    print(f"{args.events} hard bounces (opt-out + note + tag) in a burst; Keap at {rate:g}/s")
    for label, client_rate in [
        (f"client at Keap's rate ({rate:g}/s)", rate),
        (f"client told {rate * 4:g}/s (4x Keap's)", rate * 4),
    ]:
        print(run(label, args.events, rate, client_rate).line(), flush=True)
    print("goals: at most 3.1 calls/event; told 4x: at least 0.9 of the ceiling, at most 2 % 429s")


if __name__ == "__main__":
    main()
