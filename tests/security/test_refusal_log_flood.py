"""Issue 13, item 8: refused requests are summarised per interval, not one line each.

60,000 unauthenticated requests made 60,005 log lines. Now the first refusal after a quiet
spell is logged as it is, and the rest as one line per minute with counts by status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest

from connector.metrics import Metrics
from connector.store import Store
from connector.webhook import WebhookConfig, create_app
from tests.fixtures_store import FakeClock

SECRET = "refusal-flood-key-0123"
FORM = {"content-type": "application/x-www-form-urlencoded"}

Hook = Callable[[], httpx.AsyncClient]


@pytest.fixture
async def hook(store: Store) -> AsyncIterator[tuple[httpx.AsyncClient, FakeClock]]:
    clock = FakeClock(1000.0)
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics(), clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hook"
    ) as client:
        yield client, clock


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "connector.access"]


def summarised(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        for status, n in re.findall(r"(\d{3}) x(\d+)", line):
            counts[status] = counts.get(status, 0) + int(n)
    return counts


async def test_issue13_item8_1000_refused_requests_make_a_handful_of_lines(
    hook: tuple[httpx.AsyncClient, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    client, clock = hook
    caplog.set_level(logging.INFO, logger="connector.access")
    for i in range(1000):
        if i % 10 == 0:
            await client.post("/keap/bounce/hard_bounce?key=wrong", content="x", headers=FORM)
        else:
            await client.post("/keap/bounce/hard_bounce", content="x", headers=FORM)
        clock.advance(0.1)  # 1,000 requests in 100 s
    clock.advance(60)
    await client.get("/healthz")  # any request ends a finished interval
    lines = access_lines(caplog)
    assert len(lines) <= 4, lines
    assert re.fullmatch(r"POST /keap/bounce/hard_bounce 401 \d+\.\dms", lines[0])
    assert summarised(lines[1:]) == {"401": 999}, "every refusal is counted once"


async def test_issue13_item8_a_steady_trickle_is_one_line_a_minute(
    hook: tuple[httpx.AsyncClient, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    client, clock = hook
    caplog.set_level(logging.INFO, logger="connector.access")
    for _ in range(600):  # one refusal a second for ten minutes, two kinds
        await client.post("/keap/bounce/hard_bounce?key=wrong", content="x", headers=FORM)
        await client.post(
            f"/keap/bounce/hard_bounce?key={SECRET}", content="x", headers={"content-type": "a/b"}
        )
        clock.advance(1.0)
    clock.advance(60)
    await client.get("/healthz")
    lines = access_lines(caplog)
    assert len(lines) <= 1 + 11, lines
    counted = summarised(lines[1:])
    assert counted["401"] + counted["415"] == 1199, "every refusal but the first is counted"


async def test_issue13_item8_a_refusal_after_a_quiet_spell_is_logged_in_full(
    hook: tuple[httpx.AsyncClient, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    client, clock = hook
    caplog.set_level(logging.INFO, logger="connector.access")
    await client.post("/keap/bounce/hard_bounce?key=wrong", content="x", headers=FORM)
    clock.advance(61)
    await client.post("/keap/bounce/hard_bounce?key=wrong", content="x", headers=FORM)
    clock.advance(130)
    await client.post("/keap/bounce/nope?key=wrong", content="x", headers=FORM)
    lines = access_lines(caplog)
    assert len(lines) == 3, lines
    assert all(re.fullmatch(r"POST /keap/bounce/\w+ 401 \d+\.\dms", line) for line in lines)
