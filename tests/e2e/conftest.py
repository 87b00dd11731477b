"""The end-to-end tests run the real processes on each backend: SQLite, then PostgreSQL."""

from __future__ import annotations

import pytest


@pytest.fixture
def connector_database_url(database_url: str) -> str:
    """The ``connector`` install's store: a SQLite file, then a PostgreSQL schema of its own."""
    return database_url
