"""What to retry, how long to wait, and how fast to go.

Keap throttles per second (SpikeArrest), per minute and per day, and asks integrators to back off
exponentially on 429. Two mechanisms cooperate:

- ``RateLimiter`` paces every request of the process *before* it is sent (token bucket), and slows
  down further when Keap's ``x-keap-*-throttle-available`` headers say the budget is running out;
- ``RetryPolicy`` decides, *after* a failure, whether the same request may be sent again and when.

Only ``KeapThrottledError`` (429) and ``KeapUnavailableError`` (5xx, transport failures) are
retried; every other 4xx means the request itself is wrong and resending cannot help.

Non-idempotent writes (creating a note, a task, a tag) are the exception: when such a request may
have reached Keap but its answer was lost (read timeout, dropped connection, a 5xx from a gateway
that may have forwarded it), resending could write it twice. The client raises
``OutcomeUnknownError`` for those instead of a retryable error, so this policy never resends them;
the caller checks Keap (for instance lists the contact's notes) before writing again. Failures
where the request provably never left (connect errors, pool timeouts) and 429s (rejected by the
gateway before any processing) are still retried for every request.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from connector.config import Settings
from connector.errors import (
    ConnectorError,
    KeapForbiddenError,
    KeapNotFoundError,
    KeapRequestError,
    KeapResponseInfo,
    KeapThrottledError,
    KeapUnauthorizedError,
    KeapUnavailableError,
    OutcomeUnknownError,
)
from connector.logs import scrub

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
T = TypeVar("T")

BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0

# How low Keap's remaining throttle budget may fall before the limiter slows down: a fraction of
# the advertised limit, or an absolute count when Keap does not send the limit header.
LOW_BUDGET_FRACTION = 0.2
LOW_BUDGET_DEFAULT = 50
MIN_RATE_FACTOR = 0.05
THROTTLED_FACTOR = 0.8  # a 429: pace at this share of what was sent (multiplicative decrease)
RECOVERY_STEP = 0.01  # each success after a 429: add back this share of the configured rate
SAFE_START_RATE = 4.0  # requests/s: under Keap's 5/s service-key SpikeArrest (keap-api.md 5)
DECREASE_EVERY = 1.0  # seconds: 429s of requests sent together count as one signal
THROTTLE_HEADER_PREFIXES = ("x-keap-product-throttle", "x-keap-tenant-throttle")
BODY_EXCERPT_CHARS = 300
NOT_IMPLEMENTED = 501  # Keap's spec lists it; asking again cannot make Keap implement the call


def keap_error(
    method: str,
    path: str,
    *,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    body: str = "",
    idempotent: bool = True,
    sent: bool = True,
    malformed: bool = False,
) -> ConnectorError:
    """The one translation of a failed Keap call into the connector's error tree.

    ``status`` is ``None`` when no response arrived; ``sent`` is ``False`` when the request
    provably never reached Keap (a connect failure); ``malformed`` marks an answer that does not
    parse, treated like a 5xx whatever its status. A lost answer to a non-idempotent write, or a
    5xx to one, becomes ``OutcomeUnknownError`` so that nobody resends it blindly. The body is
    scrubbed of registered secrets and email addresses and cut short; no header but
    ``x-request-id`` is kept, so no credential can reach the error.
    """
    headers = headers or {}
    info = KeapResponseInfo(
        method=method.upper(),
        path=scrub(path),
        status=status,
        request_id=headers.get("x-request-id"),
        body=_excerpt(body),
    )
    unknown = not idempotent and sent
    if status is None:
        if unknown:
            return OutcomeUnknownError("the connection to Keap failed mid-write", keap=info)
        return KeapUnavailableError("Keap could not be reached", keap=info)
    if (status >= 500 and status != NOT_IMPLEMENTED) or malformed:
        if unknown:
            return OutcomeUnknownError("Keap failed while handling a write", keap=info)
        return KeapUnavailableError("Keap is unavailable", keap=info)
    return _client_error(status, headers, info)


def _client_error(
    status: int, headers: Mapping[str, str], info: KeapResponseInfo
) -> ConnectorError:
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return KeapThrottledError("Keap throttled the request", retry_after=retry_after, keap=info)
    if status == 401:
        return KeapUnauthorizedError("Keap rejected the credentials", keap=info)
    if status == 403:
        return KeapForbiddenError("Keap refused access", keap=info)
    if status == 404:
        return KeapNotFoundError("Keap has no such item", keap=info)
    return KeapRequestError("Keap rejected the request", keap=info)


def _excerpt(body: str) -> str:
    text = " ".join(scrub(body).split())
    if len(text) <= BODY_EXCERPT_CHARS:
        return text
    return text[: BODY_EXCERPT_CHARS - 3] + "..."


def is_retryable(exc: BaseException) -> bool:
    """429 and 5xx/transport failures may pass on their own; nothing else will."""
    return isinstance(exc, KeapThrottledError | KeapUnavailableError)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), if usable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class RetryPolicy:
    """Capped exponential backoff with full jitter, bounded in attempts and in total time.

    ``sleep``, ``clock`` and ``rng`` are injectable so tests measure waits without waiting.
    """

    max_attempts: int = 6
    max_seconds: float = 120.0
    base_delay: float = BASE_DELAY_SECONDS
    max_delay: float = MAX_DELAY_SECONDS
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> RetryPolicy:
        values: dict[str, object] = {
            "max_attempts": settings.keap_max_attempts,
            "max_seconds": settings.keap_max_retry_seconds,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before attempt ``attempt + 1``; Keap's own ``Retry-After`` wins when given."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(0.0, ceiling)

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        on_retry: Callable[[BaseException, int, float], None] | None = None,
    ) -> T:
        """Run ``call`` until it succeeds, fails for good, or a bound is reached.

        When a bound is reached the last error is raised as is, so callers see the same
        ``KeapThrottledError`` / ``KeapUnavailableError`` they would have seen without retries.
        """
        started = self.clock()

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after if isinstance(exc, KeapThrottledError) else None
            return self.backoff(state.attempt_number, retry_after)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                return True
            return self.clock() - started + state.upcoming_sleep > self.max_seconds

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(error, state.attempt_number, state.upcoming_sleep)

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=wait,
            stop=stop,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

        async def attempt() -> T:
            # tenacity runs plain callables synchronously; it must see a coroutine function.
            return await call()

        return await retrying(attempt)


class RateLimiter:
    """Token bucket shared by every request of the process, pacing at what Keap really allows.

    A request reserves its token synchronously (no ``await`` between reading and updating the
    bucket), so concurrent tasks cannot both take the last token, and no asyncio lock ties the
    limiter to one event loop. A reservation may drive the bucket negative; that debt is how long
    the caller sleeps, so callers are served in arrival order.

    The pace adapts, so a wrong ``KEAP_REQUESTS_PER_SECOND`` costs little (``observe``):

    - Keap's throttle headers say its rate (``limit`` requests per ``interval`` ``time-unit``):
      the pace never exceeds it, whatever was configured;
    - a 429 is additive-increase / multiplicative-decrease: the pace drops to
      ``THROTTLED_FACTOR`` of what was sent, Keap's ``Retry-After`` is honoured by every request
      of the process (the bucket goes into debt for it), and each success then adds back a
      little, up to the ceiling;
    - a low remaining budget slows it in proportion, as before.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        cautious_start: bool = False,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated = clock()
        self._factor = 1.0
        self._keap_rate: float | None = None  # what Keap's headers say it allows
        # AIMD's pace after a 429. A cautious start paces at Keap's safe key rate until Keap's
        # headers state its real rate, so a rate configured too high costs no 429 burst.
        self._learned: float | None = min(rate, SAFE_START_RATE) if cautious_start else None
        if self._learned == rate:
            self._learned = None
        self._decreased_at: float | None = None
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """The configured ceiling, before any slowdown from Keap's headers."""
        return self._rate

    @property
    def effective_rate(self) -> float:
        """The pace now: the tightest of the configured rate, Keap's stated rate and what 429s
        taught. A low remaining budget slows it only when Keap does not state its rate: pacing
        exactly at a stated rate keeps the budget near empty by design."""
        ceiling = min(self._rate, self._keap_rate or self._rate, self._learned or self._rate)
        return ceiling if self._keap_rate is not None else ceiling * self._factor

    def set_rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        with self._lock:
            self._refill(self._clock())
            self._rate = rate

    async def acquire(self) -> None:
        """Wait until this request may be sent."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)

    def reserve(self) -> float:
        """Take one token now and return how long to wait before using it."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.effective_rate

    def observe(self, headers: Mapping[str, str], status: int | None = None) -> None:
        """Learn Keap's pace from one answer: its headers, and whether it was a 429."""
        factor = _budget_factor(headers)
        keap_rate = _header_rate(headers)
        with self._lock:
            self._refill(self._clock())
            if factor is not None:
                self._factor = factor
            if keap_rate is not None:
                if self._keap_rate is None and self._decreased_at is None:
                    self._learned = None  # the cautious start ends: Keap said its rate
                self._keap_rate = keap_rate
            if status == 429:
                self._throttled(parse_retry_after(headers.get("retry-after")))
            elif status is not None and status < 400 and self._learned is not None:
                self._learned += self._rate * RECOVERY_STEP
                if self._learned >= self._rate:
                    self._learned = None

    def _throttled(self, retry_after: float | None) -> None:
        """Multiplicative decrease, once per ``DECREASE_EVERY`` seconds however many requests
        in flight come back 429 together; and Keap's pause applied to every later request."""
        now = self._clock()
        if self._decreased_at is None or now - self._decreased_at >= DECREASE_EVERY:
            self._decreased_at = now
            sent_at = min(self._rate, self._keap_rate or self._rate, self._learned or self._rate)
            self._learned = max(self._rate * MIN_RATE_FACTOR, sent_at * THROTTLED_FACTOR)
        if retry_after:
            self._tokens = min(self._tokens, -retry_after * self.effective_rate)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed * self.effective_rate)
        self._updated = now


def _budget_factor(headers: Mapping[str, str]) -> float | None:
    factors = []
    for prefix in THROTTLE_HEADER_PREFIXES:
        available = _header_int(headers, f"{prefix}-available")
        if available is None:
            continue
        limit = _header_int(headers, f"{prefix}-limit")
        low = limit * LOW_BUDGET_FRACTION if limit else LOW_BUDGET_DEFAULT
        factors.append(min(1.0, max(MIN_RATE_FACTOR, available / max(low, 1.0))))
    return min(factors) if factors else None


_UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


def _header_rate(headers: Mapping[str, str]) -> float | None:
    """Requests per second Keap's throttle headers allow (the tightest one), if they say."""
    rates = []
    for prefix in THROTTLE_HEADER_PREFIXES:
        limit = _header_int(headers, f"{prefix}-limit")
        interval = _header_int(headers, f"{prefix}-interval") or 1
        unit = _UNIT_SECONDS.get((headers.get(f"{prefix}-time-unit") or "").strip().lower())
        if limit and limit > 0 and unit and interval > 0:
            rates.append(limit / (interval * unit))
    return min(rates) if rates else None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


_shared: RateLimiter | None = None
_shared_lock = threading.Lock()


def shared_limiter(rate: float) -> RateLimiter:
    """The one limiter of this process: Keap counts every request of the credential together."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RateLimiter(rate)
        elif _shared.rate != rate:
            _shared.set_rate(rate)
        return _shared
