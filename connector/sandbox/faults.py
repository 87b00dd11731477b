"""Fault injection: outages, random errors, latency and dropped connections.

Faults hit only requests that match the filter (``method`` and a ``path`` regular expression);
with no ``path`` they hit every API call under ``/crm/``. ``drop_count`` and ``error_count``
limit a fault to the next N matching requests, which is how a test makes exactly one note
creation lose its response.

A drop happens before the request is handled (Keap never saw it) unless ``drop_after_handling``
is set: then the request is carried out (the note *is* created) and only the answer is lost, the
case of a gateway timing out after forwarding. That is the hard one for a client, because
resending a non-idempotent write would do it twice.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from connector.sandbox.messages import ApiError

DEFAULT_SCOPE = r"^/crm/"


@dataclass(frozen=True)
class FaultSettings:
    outage_seconds: float = 0.0  # an outage of this length starts when the settings are applied
    error_rate: float = 0.0  # share of matching requests answered with ``error_status``
    error_status: int = 503
    error_count: int | None = None  # answer only the next N matching requests with an error
    latency_ms: float = 0.0  # added before every matching request is handled
    drop_rate: float = 0.0  # share of matching requests whose connection is closed unanswered
    drop_count: int | None = None  # drop only the next N matching requests
    drop_after_handling: bool = False  # carry a dropped request out, then lose its answer
    method: str | None = None
    path: str | None = None  # regular expression searched in the request path


@dataclass(frozen=True)
class Fault:
    """What to do to one request."""

    delay: float = 0.0
    drop: bool = False  # close the connection without handling the request
    drop_after: bool = False  # handle the request, then close the connection unanswered
    error_status: int | None = None
    reason: str = ""


class FaultInjector:
    def __init__(self, settings: FaultSettings | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._settings = FaultSettings()
        self._outage_until = 0.0
        self._pattern = re.compile(DEFAULT_SCOPE)
        self.apply(settings or FaultSettings())

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def apply(self, settings: FaultSettings, *, restart_outage: bool = True) -> None:
        _validate(settings)
        with self._lock:
            self._settings = settings
            self._pattern = re.compile(settings.path or DEFAULT_SCOPE)
            if restart_outage:
                self._outage_until = time.monotonic() + settings.outage_seconds

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        """Merge ``changes`` into the current settings (``reset: true`` starts from none)."""
        reset = bool(changes.pop("reset", False))
        base = FaultSettings() if reset else self._settings
        known = {f.name for f in fields(FaultSettings)}
        unknown = set(changes) - known
        if unknown:
            raise ApiError(400, f"unknown fault settings: {', '.join(sorted(unknown))}")
        try:
            settings = replace(base, **changes)
        except TypeError as exc:
            raise ApiError(400, str(exc)) from exc
        self.apply(settings, restart_outage=reset or "outage_seconds" in changes)
        return settings

    def describe(self) -> dict[str, Any]:
        with self._lock:
            remaining = max(0.0, self._outage_until - time.monotonic())
            return {**asdict(self._settings), "outage_remaining_seconds": round(remaining, 3)}

    def decide(self, method: str, path: str) -> Fault:
        with self._lock:
            s = self._settings
            if s.method and s.method.upper() != method.upper():
                return Fault()
            if not self._pattern.search(path):
                return Fault()
            delay = s.latency_ms / 1000
            if self._should("drop", s.drop_rate, s.drop_count):
                after = s.drop_after_handling
                return Fault(delay, drop=not after, drop_after=after, reason="drop")
            if time.monotonic() < self._outage_until:
                return Fault(delay, error_status=503, reason="outage")
            if self._should("error", s.error_rate, s.error_count):
                return Fault(delay, error_status=s.error_status, reason="error_rate")
            return Fault(delay)

    def _should(self, kind: str, rate: float, count: int | None) -> bool:
        """Called with the lock held; spends one of ``count`` when the fault fires."""
        if rate <= 0 and count is None:
            return False
        if count is not None and count <= 0:
            return False
        if count is None and self._rng.random() >= rate:
            return False
        if count is not None:
            if rate > 0 and self._rng.random() >= rate:
                return False
            if kind == "drop":
                self._settings = replace(self._settings, drop_count=count - 1)
            else:
                self._settings = replace(self._settings, error_count=count - 1)
        return True


def _validate(settings: FaultSettings) -> None:
    for name in ("error_rate", "drop_rate"):
        value = getattr(settings, name)
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ApiError(400, f"{name} must be between 0 and 1")
    for name in ("outage_seconds", "latency_ms"):
        value = getattr(settings, name)
        if not isinstance(value, int | float) or value < 0:
            raise ApiError(400, f"{name} must be a non-negative number")
    for name in ("error_count", "drop_count"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ApiError(400, f"{name} must be a non-negative integer or null")
    if not isinstance(settings.drop_after_handling, bool):
        raise ApiError(400, "drop_after_handling must be true or false")
    if not 400 <= settings.error_status <= 599:
        raise ApiError(400, "error_status must be an HTTP error status")
    try:
        re.compile(settings.path or DEFAULT_SCOPE)
    except re.error as exc:
        raise ApiError(400, f"path is not a regular expression: {exc}") from exc
