"""Benchmark the Keap sandbox: start-up time and paging rate with 100,000 contacts.

Run: .venv/bin/python scripts/bench_sandbox.py [--contacts N]
Figures are printed, never asserted: they depend on the machine. The throttle is set far above
anything reached so the figures show what the sandbox itself can serve, to compare with the
throttle rate (25 requests per second by default, Keap's OAuth limit).
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import httpx

from connector.sandbox import RunningSandbox, SandboxOptions, start_sandbox


def page_all(client: httpx.Client, path: str, key: str, params: dict[str, Any]) -> tuple[int, int]:
    items, pages, token = 0, 0, ""
    while True:
        query = dict(params, page_token=token) if token else dict(params)
        response = client.get(path, params=query)
        response.raise_for_status()
        body = response.json()
        items += len(body[key])
        pages += 1
        token = body["next_page_token"]
        if not token:
            return items, pages


def timed(label: str, count_label: str, run: Any) -> None:
    started = time.perf_counter()
    items, requests = run()
    elapsed = time.perf_counter() - started
    print(
        f"{label:<44} {items:>7} {count_label} in {requests:>4} requests, {elapsed:6.2f} s: "
        f"{items / elapsed:>9,.0f} {count_label}/s, {requests / elapsed:>6.1f} requests/s"
    )


def small_requests(client: httpx.Client, sandbox: RunningSandbox, count: int) -> tuple[int, int]:
    ids = sandbox.state.contact_ids
    for index in range(count):
        contact_id = ids[index * 997 % len(ids)]
        client.get(
            f"/contacts/{contact_id}", params={"fields": "email_addresses"}
        ).raise_for_status()
    return count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    options = SandboxOptions(contacts=args.contacts, requests_per_second=1_000_000.0, seed=1)
    sandbox = start_sandbox(options)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"contacts                                     {len(sandbox.state.contacts):>7}")
    print(f"addresses                                    {len(sandbox.state.addresses):>7}")
    print(f"start-up (seed + spec load + bind)           {sandbox.startup_seconds:7.2f} s")
    print(
        f"peak RSS growth                              {(rss_after - rss_before) / 1024:7.0f} MiB"
    )
    headers = {"X-Keap-API-Key": sandbox.api_key}
    base = f"{sandbox.base_url}/rest/v2"
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            contacts = {"page_size": 1000, "fields": "email_addresses,given_name,family_name"}
            timed(
                "contacts, page_size 1000, by id",
                "contacts",
                lambda: page_all(client, "/contacts", "contacts", contacts),
            )
            by_time = dict(contacts, order_by="update_time")
            timed(
                "contacts, page_size 1000, by update_time",
                "contacts",
                lambda: page_all(client, "/contacts", "contacts", by_time),
            )
            bounced = {"page_size": 1000, "filter": "statuses==HARD_BOUNCE,BOUNCE"}
            timed(
                "emailAddresses statuses==HARD_BOUNCE,BOUNCE",
                "addresses",
                lambda: page_all(client, "/emailAddresses", "email_addresses", bounced),
            )
            timed("single contact reads", "contacts", lambda: small_requests(client, sandbox, 500))
    finally:
        sandbox.stop()
    print(f"throttle rate for comparison: {SandboxOptions().requests_per_second:.0f} requests/s")


if __name__ == "__main__":
    main()
