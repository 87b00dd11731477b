"""Retry policy, error mapping and the rate limiter, all on fake time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import (
    ConnectorError,
    KeapForbiddenError,
    KeapNotFoundError,
    KeapRequestError,
    KeapThrottledError,
    KeapUnauthorizedError,
    KeapUnavailableError,
    OutcomeUnknownError,
)
from connector.keap.retry import (
    RateLimiter,
    RetryPolicy,
    is_retryable,
    keap_error,
    parse_retry_after,
    shared_limiter,
)
from connector.logs import register_secret
from tests.keap.fakes import FakeClock


def policy(clock: FakeClock, **kwargs: float) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=int(kwargs.pop("max_attempts", 5)),
        max_seconds=kwargs.pop("max_seconds", 60.0),
        sleep=clock.sleep,
        clock=clock.now,
        rng=random.Random(1),
    )


def failing(
    errors: list[Exception], result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return call, calls


# --- mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "idempotent", "expected"),
    [
        (400, True, KeapRequestError),
        (401, True, KeapUnauthorizedError),
        (403, True, KeapForbiddenError),
        (404, True, KeapNotFoundError),
        (405, True, KeapRequestError),
        (409, False, KeapRequestError),
        (429, True, KeapThrottledError),
        (429, False, KeapThrottledError),
        (500, True, KeapUnavailableError),
        (503, True, KeapUnavailableError),
        (502, False, OutcomeUnknownError),
        (501, True, KeapRequestError),
        (501, False, KeapRequestError),
        (None, True, KeapUnavailableError),
        (None, False, OutcomeUnknownError),
    ],
)
def test_keap_error_maps_each_status(
    status: int | None, idempotent: bool, expected: type[ConnectorError]
) -> None:
    error = keap_error("get", "/rest/v2/contacts/1", status=status, idempotent=idempotent)

    assert type(error) is expected
    assert error.keap is not None
    assert (error.keap.method, error.keap.status) == ("GET", status)


def test_a_write_that_never_left_is_plainly_unavailable() -> None:
    error = keap_error("POST", "/rest/v2/tasks", status=None, idempotent=False, sent=False)

    assert type(error) is KeapUnavailableError


def test_keap_error_keeps_request_id_and_retry_after() -> None:
    error = keap_error(
        "GET",
        "/rest/v2/contacts",
        status=429,
        headers={"x-request-id": "abc-123", "retry-after": "3"},
        body='{"code":429,"message":"Quota Exceeded"}',
    )

    assert isinstance(error, KeapThrottledError)
    assert error.retry_after == 3.0
    assert error.keap is not None
    assert error.keap.request_id == "abc-123"
    assert "Quota Exceeded" in str(error)


def test_keap_error_scrubs_secrets_and_emails_and_truncates() -> None:
    secret = "very-secret-token-value-123"
    register_secret(secret)
    body = f"token {secret} belongs to jane.doe@example.com " + "z" * 1000

    error = keap_error(
        "GET", "/rest/v2/emailAddresses/jane.doe@example.com/status", status=400, body=body
    )

    text = str(error)
    assert secret not in text
    assert "jane.doe@example.com" not in text
    assert error.keap is not None
    assert len(error.keap.body) <= 300


def test_only_throttling_and_unavailability_are_retryable() -> None:
    assert is_retryable(KeapThrottledError("x"))
    assert is_retryable(KeapUnavailableError("x"))
    assert not is_retryable(OutcomeUnknownError("x"))
    assert not is_retryable(KeapRequestError("x"))
    assert not is_retryable(KeapNotFoundError("x"))
    assert not is_retryable(ValueError("x"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    assert parse_retry_after(header, now) == expected


# --- policy ---------------------------------------------------------------------------------


@given(attempt=st.integers(min_value=1, max_value=40), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_under_a_capped_exponential(attempt: int, seed: int) -> None:
    retry = RetryPolicy(rng=random.Random(seed), base_delay=0.5, max_delay=30.0)

    wait = retry.backoff(attempt)

    assert 0.0 <= wait <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_backoff_spreads_out_rather_than_marching_in_step() -> None:
    retry = RetryPolicy(rng=random.Random(3))

    waits = {round(retry.backoff(6), 3) for _ in range(50)}

    assert len(waits) > 40


async def test_retries_until_success(clock: FakeClock) -> None:
    call, calls = failing([KeapUnavailableError("a"), KeapThrottledError("b")])
    seen: list[tuple[str, int]] = []

    result = await policy(clock).run(call, lambda e, n, w: seen.append((type(e).__name__, n)))

    assert result == "ok"
    assert len(calls) == 3
    assert seen == [("KeapUnavailableError", 1), ("KeapThrottledError", 2)]
    assert len(clock.sleeps) == 2


async def test_attempts_are_bounded(clock: FakeClock) -> None:
    call, calls = failing([KeapUnavailableError(str(i)) for i in range(10)])

    with pytest.raises(KeapUnavailableError, match=r"^2"):
        await policy(clock, max_attempts=3).run(call)

    assert len(calls) == 3


async def test_total_time_is_bounded(clock: FakeClock) -> None:
    errors: list[Exception] = [KeapThrottledError("t", retry_after=4.0) for _ in range(10)]
    call, calls = failing(errors)

    with pytest.raises(KeapThrottledError):
        await policy(clock, max_attempts=50, max_seconds=10.0).run(call)

    assert clock.sleeps == [4.0, 4.0]
    assert len(calls) == 3


@pytest.mark.parametrize(
    "error", [KeapRequestError("bad"), KeapNotFoundError("gone"), OutcomeUnknownError("?")]
)
async def test_no_retry_for_errors_that_will_not_pass(clock: FakeClock, error: Exception) -> None:
    call, calls = failing([error])

    with pytest.raises(type(error)):
        await policy(clock).run(call)

    assert len(calls) == 1
    assert clock.sleeps == []


async def test_retry_after_overrides_backoff(clock: FakeClock) -> None:
    call, _ = failing([KeapThrottledError("t", retry_after=12.5)])

    await policy(clock).run(call)

    assert clock.sleeps == [12.5]


# --- limiter --------------------------------------------------------------------------------


async def test_limiter_holds_the_rate_for_one_caller(clock: FakeClock) -> None:
    limiter = RateLimiter(5.0, clock=clock.now, sleep=clock.sleep)
    start = clock.now()
    grants = []

    for _ in range(50):
        await limiter.acquire()
        grants.append(clock.now())

    assert clock.now() - start == pytest.approx(49 / 5.0)
    assert all(later - earlier >= 0.2 - 1e-9 for earlier, later in pairwise(grants))


class Timeline:
    """Fake time for many tasks at once: each sleeper wakes at its own deadline, in order."""

    def __init__(self) -> None:
        self.t = 0.0
        self.grants: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        wake = self.t + seconds
        await asyncio.sleep(0)
        self.t = max(self.t, wake)


async def test_limiter_holds_the_rate_across_concurrent_callers() -> None:
    timeline = Timeline()
    limiter = RateLimiter(10.0, burst=3, clock=timeline.now, sleep=timeline.sleep)

    async def request() -> float:
        delay = limiter.reserve()
        granted = timeline.now() + delay
        await timeline.sleep(delay)
        return granted

    grants = sorted(await asyncio.gather(*(request() for _ in range(40))))

    for i, start in enumerate(grants):
        in_window = [g for g in grants[i:] if g < start + 1.0]
        assert len(in_window) <= 10 + 3
    assert grants[-1] == pytest.approx((40 - 3) / 10.0)


async def test_low_throttle_headers_slow_the_limiter_and_recover(clock: FakeClock) -> None:
    limiter = RateLimiter(10.0, clock=clock.now, sleep=clock.sleep)

    limiter.observe(
        {"x-keap-tenant-throttle-available": "250", "x-keap-tenant-throttle-limit": "5000"}
    )
    assert limiter.effective_rate == pytest.approx(10.0 * 250 / 1000)
    limiter.observe({"x-keap-product-throttle-available": "0"})
    assert limiter.effective_rate == pytest.approx(10.0 * 0.05)
    limiter.observe(
        {"x-keap-product-throttle-available": "1400", "x-keap-product-throttle-limit": "1500"}
    )
    assert limiter.effective_rate == pytest.approx(10.0)


async def test_slowdown_lengthens_the_wait(clock: FakeClock) -> None:
    limiter = RateLimiter(10.0, clock=clock.now, sleep=clock.sleep)
    await limiter.acquire()
    normal = limiter.reserve()

    limiter.observe({"x-keap-product-throttle-available": "5"})
    slowed = limiter.reserve()

    assert normal == pytest.approx(0.1)
    assert slowed > 5 * normal


def test_limiter_ignores_responses_without_throttle_headers(clock: FakeClock) -> None:
    limiter = RateLimiter(10.0, clock=clock.now)
    limiter.observe({"x-keap-product-throttle-available": "0"})

    limiter.observe(
        {"content-type": "application/json", "x-keap-product-throttle-available": "n/a"}
    )

    assert limiter.effective_rate == pytest.approx(0.5)


def test_shared_limiter_is_one_per_process() -> None:
    first = shared_limiter(4.0)
    second = shared_limiter(8.0)

    assert first is second
    assert second.rate == 8.0


def test_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)


# --- adaptive pacing ---------------------------------------------------------------------------

KEAP_5_PER_SECOND = {
    "x-keap-product-throttle-limit": "5",
    "x-keap-product-throttle-interval": "1",
    "x-keap-product-throttle-time-unit": "second",
}


def test_a_stated_rate_is_not_slowed_further_by_an_empty_budget() -> None:
    limiter = RateLimiter(20.0)
    limiter.observe({**KEAP_5_PER_SECOND, "x-keap-product-throttle-available": "0"}, 200)
    assert limiter.effective_rate == pytest.approx(5.0)


def test_keaps_headers_cap_a_rate_configured_too_high() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20.0, clock=clock.now, sleep=clock.sleep)
    limiter.observe(KEAP_5_PER_SECOND, 200)
    assert limiter.effective_rate == pytest.approx(5.0)
    limiter.observe(
        {
            "x-keap-tenant-throttle-limit": "5000",
            "x-keap-tenant-throttle-interval": "1",
            "x-keap-tenant-throttle-time-unit": "minute",
        },
        200,
    )
    assert limiter.effective_rate == pytest.approx(20.0), "83/s allowed: the configured 20 holds"


def test_a_429_slows_down_and_successes_recover_additively() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock.now, sleep=clock.sleep)
    limiter.observe({}, 429)
    assert limiter.effective_rate == pytest.approx(8.0)
    limiter.observe({}, 429)
    assert limiter.effective_rate == pytest.approx(8.0), "429s sent together are one signal"
    clock.t += 1.0
    limiter.observe({}, 429)
    assert limiter.effective_rate == pytest.approx(6.4)
    for _ in range(10):
        limiter.observe({}, 200)
    assert limiter.effective_rate == pytest.approx(7.4)
    for _ in range(100):
        limiter.observe({}, 200)
    assert limiter.effective_rate == pytest.approx(10.0), "never beyond the configured rate"


async def test_retry_after_holds_back_every_later_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock.now, sleep=clock.sleep)
    limiter.observe({"retry-after": "3"}, 429)
    await limiter.acquire()
    assert sum(clock.sleeps) >= 3.0


@pytest.mark.parametrize(
    "headers",
    [
        {"x-keap-product-throttle-limit": "x"},
        {"x-keap-product-throttle-limit": "5", "x-keap-product-throttle-time-unit": "fortnight"},
        {"x-keap-product-throttle-limit": "0", "x-keap-product-throttle-time-unit": "second"},
        {
            "x-keap-product-throttle-limit": "5",
            "x-keap-product-throttle-interval": "-1",
            "x-keap-product-throttle-time-unit": "second",
        },
    ],
)
def test_headers_that_say_nothing_usable_change_nothing(headers: dict[str, str]) -> None:
    limiter = RateLimiter(10.0)
    limiter.observe(headers, 200)
    assert limiter.effective_rate == pytest.approx(10.0)


def test_a_cautious_start_paces_safely_until_keap_states_its_rate() -> None:
    limiter = RateLimiter(20.0, cautious_start=True)
    assert limiter.effective_rate == pytest.approx(4.0)
    limiter.observe(
        {
            "x-keap-product-throttle-limit": "25",
            "x-keap-product-throttle-interval": "1",
            "x-keap-product-throttle-time-unit": "second",
        },
        200,
    )
    assert limiter.effective_rate == pytest.approx(20.0), "Keap allows more than configured"
    assert RateLimiter(3.0, cautious_start=True).effective_rate == pytest.approx(3.0)
