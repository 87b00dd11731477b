"""What the sandbox saw: counters and a bounded request log for tests and benchmarks."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

LOG_LIMIT = 20_000
VIOLATION_LIMIT = 200


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls: Counter[str] = Counter()
            self._statuses: Counter[int] = Counter()
            self._events: Counter[str] = Counter()
            self._violations: deque[dict[str, str]] = deque(maxlen=VIOLATION_LIMIT)
            self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)

    def record(self, method: str, path: str, query: str, operation: str, status: int) -> None:
        entry = {
            "time": round(time.time(), 3),
            "method": method,
            "path": path,
            "query": query,
            "operation": operation,
            "status": status,
        }
        with self._lock:
            self._calls[operation] += 1
            self._statuses[status] += 1
            self._log.append(entry)

    def count(self, event: str) -> None:
        with self._lock:
            self._events[event] += 1

    def violation(self, method: str, path: str, reasons: list[str]) -> None:
        with self._lock:
            self._events["spec_violations"] += 1
            self._violations.append({"method": method, "path": path, "reason": "; ".join(reasons)})

    def snapshot(self, log_limit: int | None = None) -> dict[str, Any]:
        with self._lock:
            log = list(self._log)
            return {
                "calls": dict(self._calls),
                "statuses": {str(k): v for k, v in sorted(self._statuses.items())},
                "throttled": self._events["throttled"],
                "refreshes": self._events["refreshes"],
                "refresh_failures": self._events["refresh_failures"],
                "code_exchanges": self._events["code_exchanges"],
                "unauthorized": self._events["unauthorized"],
                "spec_violations": self._events["spec_violations"],
                "faults": {
                    "dropped": self._events["dropped"],
                    "outage": self._events["outage"],
                    "error_rate": self._events["error_rate"],
                    "delayed": self._events["delayed"],
                },
                "violations": list(self._violations),
                "requests": len(log),
                "log": log if log_limit is None else log[-log_limit:],
            }
