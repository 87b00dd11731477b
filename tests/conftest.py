"""Shared fixtures. Tests never read the developer's own .env or environment."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures_sandbox",
    "tests.fixtures_store",
    "tests.fixtures_connector",
    "tests.fixtures_pipeline",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--skip-slow",
        action="store_true",
        default=False,
        help="skip tests marked slow (CI never passes this)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--skip-slow"):
        return
    skip = pytest.mark.skip(reason="--skip-slow given")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test starts from no KEAP_/CONNECTOR_ variables, in an empty working directory."""
    for name in list(os.environ):
        if name.startswith(("KEAP_", "CONNECTOR_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(autouse=True)
def fresh_keap_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own process-wide Keap rate limiter (``shared_limiter``).

    A test against a throttled sandbox slows the limiter down; without this the next test in the
    same pytest process (the same test on the other backend, say) inherits that pace.
    """
    monkeypatch.setattr("connector.keap.retry._shared", None)
