"""The webhook's access log, and log lines that repeat summarised once per interval.

A connector on the internet is probed all day: scanners without the key, a misconfigured
HTTP Post sending a bad body on every bounce, a store that is down for a while. One line per
refusal buried everything else (60,000 refused requests made 60,005 lines). So a repeating
line is logged the first time, then counted, and one summary line per interval says how many
followed and of which kind. The clock is injected, so tests move time by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("connector.access")

MAX_LOGGED_PATH = 200
SUMMARY_INTERVAL = 60.0


class Summarised:
    """Log the first of a run of similar lines at once, then one count per ``interval``.

    ``note(kind, message, *args)``: when nothing was noted in the last interval, ``message`` is
    logged as it is; otherwise only ``kind`` is counted. When the interval ends, one line gives
    the counts by kind (``401 x990, 400 x9``) and a new interval starts; an interval with
    nothing noted ends the run, so the next line is again logged in full. The summary is due
    at the interval's end: checked on every ``note`` and ``tick``, and by a timer on the
    running event loop, so counts never wait for the next request.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.INFO,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._level = level
        self._interval = interval
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._window_end: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def note(self, kind: str, message: str, *args: object) -> None:
        self.tick()
        if self._window_end is None:
            self._logger.log(self._level, message, *args)
            self._open_window()
        else:
            self._counts[kind] += 1

    def tick(self) -> None:
        """Log the summary if its interval has ended."""
        if self._window_end is not None and self._clock() >= self._window_end:
            self.flush()

    def flush(self) -> None:
        """Log what was counted (if anything) now; a new interval starts only if it was."""
        counts, self._counts = self._counts, Counter()
        if not counts:
            self._window_end = None
            return
        shown = ", ".join(f"{kind} x{n}" for kind, n in counts.most_common())
        self._logger.log(
            self._level,
            "%s: %d more in the last %.0f s (%s)",
            self._what,
            sum(counts.values()),
            self._interval,
            shown,
        )
        self._open_window()

    def _open_window(self) -> None:
        self._window_end = self._clock() + self._interval
        self._schedule(self._interval)

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._timer = None
            return
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._window_end is None:
            return
        left = self._window_end - self._clock()
        if left > 0:
            self._schedule(left)
        else:
            self.flush()


class AccessLog:
    """One line per request: method, path, status and duration, never the query string.

    The query string carries the webhook key (``?key=...``), which is why uvicorn's own access
    log stays off. Refusals are logged at INFO (someone is calling with a wrong key or body),
    summarised per interval (see ``Summarised``); successes at DEBUG, since every stored
    callback already logs its own line and probes of ``/healthz`` and ``/metrics`` would drown
    everything else.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.refusals = Summarised(access_log, "refused requests", interval=interval, clock=clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            if status >= 400:
                self.refusals.note(
                    str(status),
                    "%s %s %d %.1fms",
                    scope["method"],
                    printable(scope["path"]),
                    status,
                    elapsed,
                )
            else:
                self.refusals.tick()
                if access_log.isEnabledFor(logging.DEBUG):
                    access_log.debug(
                        "%s %s %d %.1fms",
                        scope["method"],
                        printable(scope["path"]),
                        status,
                        elapsed,
                    )


def printable(path: str) -> str:
    """A bounded path with control characters escaped, so a request cannot forge log lines."""
    shown = path[:MAX_LOGGED_PATH] + ("..." if len(path) > MAX_LOGGED_PATH else "")
    return shown.encode("unicode_escape").decode("ascii")
