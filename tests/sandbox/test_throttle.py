from __future__ import annotations

import time

import httpx
import pytest

from connector.sandbox import RunningSandbox
from connector.sandbox.throttle import Throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    throttle = Throttle(rate=2.0, burst=4.0, clock=clock)
    decisions = [throttle.take("k") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, True, False]
    assert [d.headers["x-keap-product-throttle-available"] for d in decisions] == [
        "3",
        "2",
        "1",
        "0",
        "0",
    ]
    clock.now += 0.5
    assert throttle.take("k").allowed
    assert not throttle.take("k").allowed


def test_buckets_are_per_credential() -> None:
    throttle = Throttle(rate=1.0, burst=1.0, clock=FakeClock())
    assert throttle.take("a").allowed
    assert not throttle.take("a").allowed
    assert throttle.take("b").allowed


@pytest.mark.parametrize("sandbox", [{"requests_per_second": 2.0, "burst": 5.0}], indirect=True)
def test_server_serves_429_above_its_rate_and_headers_count_down(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    responses = [api.get("/users") for _ in range(8)]
    statuses = [r.status_code for r in responses]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    available = [int(r.headers["x-keap-product-throttle-available"]) for r in responses[:5]]
    assert available == sorted(available, reverse=True)
    assert available[0] > available[-1]
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json() == {
        "code": 429,
        "message": "Quota Exceeded",
        "status": "Request Throttled",
        "details": None,
    }
    for name in ("limit", "time-unit", "interval", "available", "used"):
        assert f"x-keap-product-throttle-{name}" in limited.headers
    assert sandbox.stats()["throttled"] == statuses.count(429)


@pytest.mark.parametrize("sandbox", [{"requests_per_second": 20.0, "burst": 2.0}], indirect=True)
def test_a_client_pacing_at_the_rate_is_never_throttled(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    for _ in range(10):
        assert api.get("/users").status_code == 200
        time.sleep(0.06)
