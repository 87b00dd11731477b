"""Issue 13, item 7: ``/readyz`` reports what DESIGN 6 says and never a host, path or secret.

It said ready with a full disk, a deleted database or a revoked refresh token, and during a
PostgreSQL outage it told anyone the database host, port and name. Ready now means: the store
is the database this process opened, answers, and takes a committed write; Keap's credentials
are usable. A reason is fixed words; the detail goes to the log.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from connector import service
from connector.metrics import Metrics
from connector.store import Store, open_store
from connector.webhook import READY_CHECK_SECONDS, WebhookConfig, create_app
from tests.fixtures_store import FakeClock, new_schema, schema_url
from tests.reliability.test_disk_full import FullDisk
from tests.throwaway_postgres import ThrowawayPostgres

SECRET = "readyz-key-0123456789"


async def readyz(store: Store, clock: FakeClock) -> httpx.Response:
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics(), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        return await c.get("/readyz")


def shows_nothing_private(reply: httpx.Response, *private: str) -> None:
    for value in private:
        if value:
            assert value not in reply.text, f"/readyz shows {value!r}: {reply.text}"


@pytest.fixture
def tmpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullDisk]:
    mountpoint = tmp_path_factory.mktemp("tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)],
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


async def test_issue13_item7_a_full_disk_is_not_ready(tmpfs: FullDisk) -> None:
    db = tmpfs.mountpoint / "connector.db"
    store = await open_store(f"sqlite:///{db}", migrate=True)
    clock = FakeClock(100.0)
    try:
        assert (await readyz(store, clock)).status_code == 200
        tmpfs.fill()
        reply = await readyz(store, clock)
        assert reply.status_code == 503, reply.text
        assert reply.json()["problems"] == ["store: not writable"]
        shows_nothing_private(reply, str(tmpfs.mountpoint), "connector.db")
        tmpfs.free()
        assert (await readyz(store, clock)).status_code == 200
    finally:
        await store.close()


async def test_issue13_item7_a_deleted_database_file_is_not_ready(tmp_path: Path) -> None:
    db = tmp_path / "connector.db"
    store = await open_store(f"sqlite:///{db}", migrate=True)
    clock = FakeClock(100.0)
    try:
        assert (await readyz(store, clock)).status_code == 200
        db.unlink()
        reply = await readyz(store, clock)
        assert reply.status_code == 503
        assert reply.json()["problems"] == ["store: not the database this process opened"]
        shows_nothing_private(reply, str(tmp_path), "connector.db")
    finally:
        await store.close()


async def test_issue13_item7_a_postgresql_outage_shows_no_host_port_or_database() -> None:
    server = ThrowawayPostgres()
    url = await asyncio.to_thread(server.start)
    parts = urlsplit(url)
    try:
        store = await open_store(url, migrate=True)
        clock = FakeClock(100.0)
        try:
            assert (await readyz(store, clock)).status_code == 200
            await asyncio.to_thread(server.stop)
            reply = await readyz(store, clock)
            assert reply.status_code == 503
            assert reply.json()["problems"] == ["store: not reachable"]
            shows_nothing_private(
                reply, parts.hostname or "", str(parts.port), parts.path.strip("/"), "localhost"
            )
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def pg_schema(postgres_server: str) -> AsyncIterator[tuple[str, str]]:
    schema = new_schema()
    yield postgres_server, schema
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_issue13_item7_a_postgresql_schema_made_again_is_not_the_one_opened(
    pg_schema: tuple[str, str],
) -> None:
    server, schema = pg_schema
    url = schema_url(server, schema)
    store = await open_store(url, migrate=True)
    clock = FakeClock(100.0)
    try:
        assert (await readyz(store, clock)).status_code == 200
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        other = await open_store(url, migrate=True)
        await other.close()
        clock.advance(READY_CHECK_SECONDS)
        reply = await readyz(store, clock)
        assert reply.status_code == 503
        assert reply.json()["problems"] == ["store: not the database this process opened"]
        shows_nothing_private(reply, schema)
    finally:
        await store.close()


async def test_issue13_item7_revoked_credentials_are_not_ready(store: Store) -> None:
    runtime: Any = SimpleNamespace(credentials=object(), store=store)
    worker: Any = SimpleNamespace(credentials_refused=True)
    problem = await service._credentials_problem(runtime, worker)
    assert problem is not None
    assert "auth login" in problem
    worker.credentials_refused = False
    assert await service._credentials_problem(runtime, worker) == (
        "not logged in: run `connector auth login`"
    )


async def test_issue13_item7_a_flood_of_probes_costs_one_check_per_interval(store: Store) -> None:
    calls = 0
    inner = store.readiness

    async def counting() -> tuple[str, str] | None:
        nonlocal calls
        calls += 1
        return await inner()

    store.readiness = counting  # type: ignore[method-assign]  # counts the store's calls
    clock = FakeClock(100.0)
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics(), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        replies = await asyncio.gather(*(c.get("/readyz") for _ in range(200)))
        assert {r.status_code for r in replies} == {200}
        assert calls == 1
        clock.advance(READY_CHECK_SECONDS)
        await c.get("/readyz")
        assert calls == 2
