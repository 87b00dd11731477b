"""Pytest fixtures that run the Keap sandbox in-process on a real socket.

``sandbox`` is a small, fast account (50 contacts, a generous throttle). Change it for one test
with indirect parametrization::

    @pytest.mark.parametrize("sandbox", [{"contacts": 500, "burst": 5.0}], indirect=True)
    def test_x(sandbox: RunningSandbox) -> None: ...

or start several with ``sandbox_factory(contacts=..., ...)``; every one is stopped afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connector.sandbox import RunningSandbox, SandboxOptions, start_sandbox

TEST_DEFAULTS: dict[str, Any] = {"contacts": 50, "seed": 7, "requests_per_second": 200.0}

SandboxFactory = Callable[..., RunningSandbox]


def _options(overrides: dict[str, Any] | SandboxOptions | None) -> SandboxOptions:
    if isinstance(overrides, SandboxOptions):
        return overrides
    return dataclasses.replace(SandboxOptions(**TEST_DEFAULTS), **(overrides or {}))


@pytest.fixture
def sandbox_factory() -> Iterator[SandboxFactory]:
    started: list[RunningSandbox] = []

    def start(options: SandboxOptions | None = None, **overrides: Any) -> RunningSandbox:
        running = start_sandbox(options or _options(overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, sandbox_factory: SandboxFactory) -> RunningSandbox:
    return sandbox_factory(_options(getattr(request, "param", None)))
