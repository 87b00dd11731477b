"""Fixtures for the Keap client tests: every request captured by respx must satisfy Keap's spec."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx

from connector.config import Settings
from connector.keap.auth import ApiKeyAuth, Credentials
from connector.keap.client import KeapClient
from connector.keap.retry import RateLimiter, RetryPolicy
from tests.keap.fakes import API_KEY, FakeClock
from tests.keap.spec_guard import all_problems

BASE = "https://api.infusionsoft.com/crm/rest/v2"


@pytest.fixture
def keap() -> Iterator[respx.MockRouter]:
    """A respx router for Keap; at teardown, every request it saw is checked against the spec."""
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router
        # Checked inside the block: respx forgets its calls when the block exits.
        problems = all_problems(call.request for call in router.calls)
    assert problems == [], "requests Keap's spec rejects:\n" + "\n".join(problems)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(keap_api_key=API_KEY, keap_user_id="42")


@pytest.fixture
def make_client(settings: Settings, clock: FakeClock) -> Callable[..., KeapClient]:
    """Build clients on fake time: retries and pacing sleep on ``clock``, never on the wall."""

    def build(
        settings: Settings = settings,
        credentials: Credentials | None = None,
        **retry: Any,
    ) -> KeapClient:
        policy = RetryPolicy(
            max_attempts=retry.pop("max_attempts", 4),
            max_seconds=retry.pop("max_seconds", 120.0),
            sleep=clock.sleep,
            clock=clock.now,
            rng=random.Random(7),
        )
        limiter = retry.pop("limiter", None) or RateLimiter(
            1000.0, clock=clock.now, sleep=clock.sleep
        )
        if credentials is None:
            assert settings.keap_api_key is not None
            credentials = ApiKeyAuth(settings.keap_api_key)
        return KeapClient(settings, credentials, limiter=limiter, retry=policy)

    return build


@pytest.fixture
async def client(make_client: Callable[..., KeapClient]) -> Any:
    built = make_client()
    yield built
    await built.aclose()
