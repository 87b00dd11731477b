"""Durable ingest throughput of the webhook against a trivial endpoint on the same server.

    .venv/bin/python scripts/bench_ingest.py [--seconds 10] [--connections 16]
                                             [--database sqlite:///path | postgresql://...]

The server is one uvicorn process serving the real webhook app plus a baseline route that reads
the body and answers 202 without parsing or storing it. The load generator runs in its own
process (wrk when installed, else an httpx-based generator), 16 connections, Keap-style form
bodies with distinct contact ids. "Durable" means each 202 follows a committed, fsynced write
(SQLite WAL with synchronous=FULL; PostgreSQL's commit): the store's group commit lets
concurrent requests share one sync, and none is answered before its commit.

Printed: requests/s for both, their ratio, p50/p99 latency, then p50/p99 at a fixed 500
requests/s, and the count of stored events, which must equal the number of 202 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

SECRET = "bench-secret-0123456789"
BODY = "contactId={id}&Email=bench{id}%40example.com&FirstName=Bench&LastName=Mark"


# --- the server process ----------------------------------------------------------------------


def serve(port: int, database: str) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from connector.metrics import Metrics
    from connector.store import open_store
    from connector.webhook import WebhookConfig, create_app

    async def main() -> None:
        store = await open_store(database, migrate=True)
        app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics())

        async def baseline(request: Request) -> Response:
            await request.body()
            return JSONResponse({"status": "queued"}, status_code=202)

        app.router.routes.append(Route("/baseline", baseline, methods=["POST"]))
        config = uvicorn.Config(app, port=port, access_log=False, log_level="warning")
        await uvicorn.Server(config).serve()

    asyncio.run(main())


# --- the load generator process --------------------------------------------------------------


def generate(url: str, seconds: float, connections: int, rate: float, start_id: int) -> None:
    """Closed loop (rate 0: as fast as answers come) or open loop at ``rate`` requests/s."""
    import httpx

    latencies: list[float] = []
    codes: dict[int, int] = {}
    next_id = start_id
    interval = connections / rate if rate else 0.0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal next_id
        deadline = time.perf_counter() + seconds
        due = time.perf_counter()
        while time.perf_counter() < deadline:
            if interval:
                due += interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            next_id += 1
            started = time.perf_counter()
            reply = await client.post(
                url,
                content=BODY.format(id=next_id),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            latencies.append(time.perf_counter() - started)
            codes[reply.status_code] = codes.get(reply.status_code, 0) + 1

    async def main() -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            await asyncio.gather(*(one(client) for _ in range(connections)))

    asyncio.run(main())
    print(json.dumps({"latencies": latencies, "codes": codes, "seconds": seconds}))


def run_wrk(
    url: str, seconds: float, connections: int, start_id: int, rate: float
) -> dict[str, object]:
    """wrk as fast as it can, or paced to ``rate`` by a think time on every connection."""
    script = Path(tempfile.mkdtemp()) / "body.lua"
    body = BODY.replace("%", "%%").replace("{id}", "%d")
    pacing = f"delay = function() return {1000 * connections / rate:.3f} end" if rate else ""
    script.write_text(
        f"""
local threads = 0
setup = function(thread)
  thread:set("offset", {start_id} + threads * 100000000)
  threads = threads + 1
end
init = function(args) counter = offset end
{pacing}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format("{body}", counter, counter))
end
done = function(summary, latency, requests)
  io.write(string.format(
    "JSON {{\\"requests\\": %d, \\"p50\\": %d, \\"p99\\": %d, \\"non2xx\\": %d}}\\n",
    summary.requests, latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"""
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(part for part in out.splitlines() if part.startswith("JSON "))
    data = json.loads(line[5:])
    return {
        "rps": data["requests"] / seconds,
        "p50": data["p50"] / 1000,
        "p99": data["p99"] / 1000,
        "accepted": data["requests"] - data["non2xx"],
    }


def measure(
    url: str, seconds: float, connections: int, rate: float, start_id: int
) -> dict[str, object]:
    if shutil.which("wrk"):
        return run_wrk(url, seconds, connections, start_id, rate)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--generate",
            url,
            str(seconds),
            str(connections),
            str(rate),
            str(start_id),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    latencies = sorted(data["latencies"])
    accepted = data["codes"].get("202", 0)
    return {
        "rps": len(latencies) / data["seconds"],
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "accepted": accepted,
    }


# --- orchestration ---------------------------------------------------------------------------


def wait_ready(port: int) -> None:
    import httpx

    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def stored_events(database: str) -> int:
    from connector.store import open_store

    async def count() -> int:
        store = await open_store(database)
        try:
            stats = await store.queue_stats()
            return sum(stats.counts.values())
        finally:
            await store.close()

    return asyncio.run(count())


def main() -> None:
    from connector.demo import free_port

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database", default=None, help="default: a new SQLite file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    database, schema = fresh_database(args.database, workdir)
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), database])
    try:
        wait_ready(port)
        base = f"http://127.0.0.1:{port}"
        hook = f"{base}/keap/bounce/hard_bounce?key={SECRET}"
        before = stored_events(database)
        trivial = measure(f"{base}/baseline", args.seconds, args.connections, 0, 0)
        durable = measure(hook, args.seconds, args.connections, 0, 10_000_000)
        paced = measure(hook, args.seconds, args.connections, 500.0, 20_000_000)
        sent = accepted_by_server(base)
    finally:
        server.terminate()
        server.wait()
    try:
        stored = stored_events(database) - before
    finally:
        if schema is not None:
            drop_schema(args.database, schema)
    generator = "wrk" if shutil.which("wrk") else "httpx"
    report(trivial, durable, paced, stored, sent, database, generator)


def fresh_database(given: str | None, workdir: Path) -> tuple[str, str | None]:
    """A new SQLite file, or a new schema on the given PostgreSQL server (dropped after).

    Every run sends the same contact ids, so a store that kept an earlier run's events would
    answer ``duplicate`` and measure only the duplicate path.
    """
    if given is None:
        return f"sqlite:///{workdir / 'bench.db'}", None
    if not given.startswith(("postgresql://", "postgres://")):
        return given, None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    joiner = "&" if "?" in given else "?"
    return f"{given}{joiner}options=-csearch_path%3D{schema}", schema


def drop_schema(server: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def accepted_by_server(base: str) -> int:
    """202s the server sent (a load generator stopping mid-request never sees the last few),
    read once the count stops moving, so requests still in flight are counted too."""
    import httpx

    pattern = r'connector_events_received_total\{[^}]*status="queued"[^}]*\} ([0-9.e+]+)'
    last = -1
    while True:
        text = httpx.get(f"{base}/metrics", timeout=10).text
        count = int(sum(float(v) for v in re.findall(pattern, text)))
        if count == last:
            return count
        last = count
        time.sleep(0.3)


def report(
    trivial: dict[str, object],
    durable: dict[str, object],
    paced: dict[str, object],
    stored: int,
    sent: int,
    database: str,
    generator: str,
) -> None:
    backend = database.split(":", 1)[0]
    ratio = float(durable["rps"]) / float(trivial["rps"])  # type: ignore[arg-type]
    accepted = int(durable["accepted"]) + int(paced["accepted"])  # type: ignore[call-overload]
    print(f"load generator: {generator}, store: {backend}")
    for name, row in (("baseline (read body, 202)", trivial), ("webhook (durable, 202)", durable)):
        print(
            f"{name:28} {row['rps']:8.0f} req/s  p50 {row['p50']:6.1f} ms  p99 {row['p99']:6.1f} ms"
        )
    print(f"{'ratio webhook/baseline':28} {ratio:8.2f}   (goal >= 0.6)")
    print(
        f"{'webhook paced at 500 req/s':28} {paced['rps']:8.0f} req/s  p50 {paced['p50']:6.1f} ms"
        f"  p99 {paced['p99']:6.1f} ms   (goal p99 < 50 ms)"
    )
    verdict = "equal" if sent == stored else "MISMATCH"
    print(
        f"202 sent by the server: {sent}, events stored: {stored} ({verdict}); "
        f"202 seen by the load generator: {accepted}"
    )
    if sent != stored:
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--generate":
        url, seconds, connections, rate, start = sys.argv[2:7]
        generate(url, float(seconds), int(connections), float(rate), int(start))
    else:
        main()
