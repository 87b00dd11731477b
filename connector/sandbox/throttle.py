"""Keap's per-credential throttle as a token bucket, with the headers Keap sends.

The bucket refills at ``rate`` per second up to ``burst``. Headers describe it in Keap's terms:
``limit`` requests per ``interval`` ``time-unit`` (the burst over the time it takes to refill),
``available`` what is left now and ``used`` the difference, so a client pacing itself from the
headers sees them count down and recover.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: dict[str, str]


class Throttle:
    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str) -> Decision:
        with self._lock:
            now = self._clock()
            tokens, when = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
        return Decision(allowed, self._headers(tokens))

    def _headers(self, tokens: float) -> dict[str, str]:
        limit = math.floor(self.burst)
        available = max(0, min(limit, math.floor(tokens)))
        interval = max(1, round(self.burst / self.rate))
        return {
            "x-keap-product-throttle-limit": str(limit),
            "x-keap-product-throttle-time-unit": "second",
            "x-keap-product-throttle-interval": str(interval),
            "x-keap-product-throttle-available": str(available),
            "x-keap-product-throttle-used": str(limit - available),
        }

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
