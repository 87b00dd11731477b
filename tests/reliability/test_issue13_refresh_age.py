"""Issue 13 item 14: the OAuth refresh token is renewed long before Keap's 45 days, unasked.

Keap lets a refresh token die after 45 days unused. A connector that saw no bounce for that long
would be logged out by then; the worker refreshes once the refresh token is 30 days old, even
with nothing queued, and ``auth status`` shows the refresh token's age (never the token).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from connector.config import load_settings
from connector.keap import auth
from connector.keap.client import KeapClient
from connector.keap.retry import RateLimiter
from connector.metrics import Metrics
from connector.policy import default_policy
from connector.sandbox import RunningSandbox
from connector.store import Store, open_store
from connector.worker import Worker, WorkerOptions
from tests.keap.fakes import WallClock

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url, migrate=True)
    yield opened
    await opened.close()


async def test_item14_an_idle_worker_refreshes_a_30_day_old_refresh_token(
    sandbox: RunningSandbox, store: Store
) -> None:
    wall = WallClock(T0)
    settings = load_settings(**{k.lower(): v for k, v in sandbox.env(oauth=True).items()})
    await auth.begin_login(settings, store)
    await auth.complete_login(settings, store, sandbox.mint_code(), now=wall)
    credentials = auth.build_credentials(settings, store, now=wall)
    async with KeapClient(settings, credentials, limiter=RateLimiter(1000.0)) as client:
        worker = Worker(store, client, default_policy(), Metrics(), WorkerOptions(), clock=wall)

        wall.advance(timedelta(days=29))
        await worker.drain()
        assert sandbox.stats()["refreshes"] == 0, "a 29-day-old refresh token is left alone"
        status = await auth.auth_status(settings, store, now=wall)
        assert status.refresh_token_age == timedelta(days=29)
        assert "refresh token 29 days old" in status.refresh_line

        wall.advance(timedelta(days=2))
        await worker.drain()  # nothing queued: no bounce arrived in 31 days
        assert sandbox.stats()["refreshes"] == 1
        status = await auth.auth_status(settings, store, now=wall)
        assert status.refresh_token_age == timedelta(0)

        await worker.drain()
        assert sandbox.stats()["refreshes"] == 1, "refreshed once, not on every pass"
    token = await store.load_token()
    assert token is not None
    assert token.refresh_token.get_secret_value() not in status.refresh_line
