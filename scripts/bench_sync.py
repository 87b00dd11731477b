"""Benchmark ``connector sync`` against the sandbox with its throttle on, next to a naive baseline.

Run: .venv/bin/python scripts/bench_sync.py [--contacts 100000] [--small 10000] [--sample 1500]

The sandbox runs in its own process (``python -m connector sandbox``) at 25 requests per second,
Keap's OAuth ceiling; the connector's client is set to the same rate. Keap calls are counted by
the sandbox (``/_sandbox/stats``), never by the client. Each sync runs in a child process so its
peak RSS is its own. Figures are printed, never asserted: they depend on the machine.

The naive baseline does what a first script would: list the contact ids, GET each contact, and
for each bounced address read its status, apply each tag with its own call and write the note.
At one GET per contact it needs over an hour for 100,000 contacts at 25/s, so it runs on the
first ``--sample`` contacts of a fresh, identical sandbox and its rates are per contact.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

RATE = 25.0
KEY = "KeapAK-bench-sync-0123456789abcdef"
MAPPED = {"HARD_BOUNCE": ["First Hard Bounce"], "BOUNCE": []}
RUNNER = (
    "import sys; from connector.config import load_settings; from connector.cli import sync_view; "
    "from connector.sync.model import SyncOptions; "
    "sys.exit(sync_view.command(load_settings(), SyncOptions(), bar=False))"
)


@dataclass
class Figures:
    label: str
    contacts: int
    remediated: int
    calls: int
    throttled: int
    seconds: float
    peak_rss_mb: float

    def line(self) -> str:
        per = self.calls / self.remediated if self.remediated else float("nan")
        return (
            f"{self.label:<28} {self.contacts:>7} contacts {self.contacts / self.seconds:8.1f}/s  "
            f"{self.calls:>6} calls {per:5.2f}/remediated  "
            f"rate {self.calls / self.seconds / RATE:4.2f} of ceiling  429s {self.throttled:>3}  "
            f"peak RSS {self.peak_rss_mb:6.1f} MB"
        )


class Sandbox:
    """``python -m connector sandbox`` in its own process."""

    def __init__(self, port: int, contacts: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        args = [
            sys.executable,
            "-m",
            "connector",
            "sandbox",
            "--port",
            str(port),
            "--contacts",
            str(contacts),
            "--bounced-fraction",
            "0.02",
            "--requests-per-second",
            str(RATE),
            "--seed",
            "1",
            "--api-key",
            KEY,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/_sandbox/stats?log=0", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit("the sandbox did not start")

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_sandbox/stats?log=0", timeout=30)
        return dict(response.json())

    def env(self, workdir: Path) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))},
            "KEAP_API_BASE_URL": f"{self.url}/crm",
            "KEAP_API_KEY": KEY,
            "KEAP_REQUESTS_PER_SECOND": str(RATE),
            "CONNECTOR_DATABASE_URL": f"sqlite:///{workdir / 'connector.db'}",
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def calls_and_429s(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    calls = sum(after["calls"].values()) - sum(before["calls"].values())
    return calls, int(after["statuses"].get("429", 0)) - int(before["statuses"].get("429", 0))


def bench_sync(contacts: int, port: int, workdir: Path) -> Figures:
    sandbox = Sandbox(port, contacts)
    try:
        env = sandbox.env(workdir)
        subprocess.run(
            [sys.executable, "-m", "connector", "db", "migrate"],
            env=env,
            check=True,
            cwd=workdir,
            capture_output=True,
        )
        before = sandbox.stats()
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", RUNNER], env=env, cwd=workdir, stderr=subprocess.PIPE, text=True
        )
        assert child.stderr is not None
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if child.returncode != 0:
            raise SystemExit(f"sync failed:\n{stderr}")
        calls, throttled = calls_and_429s(before, sandbox.stats())
        remediated = _remediated(stderr)
        rss = usage.ru_maxrss / 1024  # kilobytes on Linux
        print("    " + stderr.strip().replace("\n", "\n    "))
        return Figures(f"sync ({contacts})", contacts, remediated, calls, throttled, seconds, rss)
    finally:
        sandbox.stop()


def _remediated(stderr: str) -> int:
    line = next(x for x in stderr.splitlines() if x.startswith("remediated "))
    return int(line.split()[1].rstrip(","))


def bench_naive(contacts: int, sample: int, port: int) -> Figures:
    """One GET per contact; per bounced address one status read, one call per tag, one note."""
    sandbox = Sandbox(port, contacts)
    try:
        before = sandbox.stats()
        started = time.perf_counter()
        with httpx.Client(
            base_url=f"{sandbox.url}/crm/rest/v2", headers={"X-Keap-API-Key": KEY}, timeout=60
        ) as http:
            pacer = _Pacer()
            remediated = _naive(http, pacer, sample)
        seconds = time.perf_counter() - started
        calls, throttled = calls_and_429s(before, sandbox.stats())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return Figures(
            f"naive ({sample} sampled)", sample, remediated, calls, throttled, seconds, rss
        )
    finally:
        sandbox.stop()


class _Pacer:
    def __init__(self) -> None:
        self._next = time.monotonic()

    def wait(self) -> None:
        self._next = max(self._next + 1 / RATE, time.monotonic())
        time.sleep(max(0.0, self._next - time.monotonic()))


def _call(http: httpx.Client, pacer: _Pacer, method: str, path: str, **kw: Any) -> Any:
    while True:
        pacer.wait()
        response = http.request(method, path, **kw)
        if response.status_code != 429:
            response.raise_for_status()
            return response.json()
        time.sleep(1.0)


def _naive(http: httpx.Client, pacer: _Pacer, sample: int) -> int:
    tags: dict[str, str] = {}
    remediated = 0
    for item in _ids(http, pacer, sample):
        contact = _call(
            http,
            pacer,
            "GET",
            f"/contacts/{item['id']}",
            params={"fields": "email_addresses,given_name,family_name,tag_ids"},
        )
        for address in contact.get("email_addresses", []):
            if address.get("email_opt_status") not in MAPPED:
                continue
            remediated += 1
            _call(http, pacer, "GET", f"/emailAddresses/{address['email']}/status")
            for name in MAPPED[address["email_opt_status"]]:
                tag_id = tags.get(name) or _tag(http, pacer, name)
                tags[name] = tag_id
                _call(
                    http,
                    pacer,
                    "POST",
                    f"/tags/{tag_id}/contacts:applyTags",
                    json={"contact_ids": [item["id"]]},
                )
            if MAPPED[address["email_opt_status"]]:
                _call(
                    http,
                    pacer,
                    "POST",
                    f"/contacts/{item['id']}/notes",
                    json={"title": "Bounce remediation", "text": "hard bounce", "user_id": "1"},
                )
    return remediated


def _ids(http: httpx.Client, pacer: _Pacer, sample: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = ""
    while len(found) < sample:
        params = {"page_size": 1000, "fields": "id", **({"page_token": token} if token else {})}
        body = _call(http, pacer, "GET", "/contacts", params=params)
        found += body["contacts"]
        token = body["next_page_token"]
        if not token:
            break
    return found[:sample]


def _tag(http: httpx.Client, pacer: _Pacer, name: str) -> str:
    created = _call(http, pacer, "POST", "/tags", json={"name": name})
    return str(created["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=1500)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small_dir, large_dir = Path(tmp, "small"), Path(tmp, "large")
        small_dir.mkdir()
        large_dir.mkdir()
        print(f"sandbox throttle {RATE:g}/s; client ceiling {RATE:g}/s; notes on (default policy)")
        small = bench_sync(args.small, args.port, small_dir)
        large = bench_sync(args.contacts, args.port + 1, large_dir)
        naive = bench_naive(args.contacts, args.sample, args.port + 2)
    for figures in (small, large, naive):
        print(figures.line())
    print(
        f"peak RSS {args.contacts} vs {args.small} contacts: "
        f"{large.peak_rss_mb / small.peak_rss_mb:.2f}x (goal <= 1.25x)"
    )
    print(
        f"calls per remediated contact: sync {large.calls / max(1, large.remediated):.2f} "
        f"(goal <= 2.1), naive {naive.calls / max(1, naive.remediated):.2f}"
    )
    print(
        f"contacts scanned per second: sync {large.contacts / large.seconds:.1f}, "
        f"naive {naive.contacts / naive.seconds:.1f}"
    )


if __name__ == "__main__":
    main()
