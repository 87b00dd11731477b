"""The store tests' fixtures come from ``tests/fixtures_store.py``.

Imported here so they apply to this directory before that module is registered as a plugin for
the whole suite; once it is, these imports are harmless duplicates.
"""

from tests.fixtures_store import (  # noqa: F401 (fixtures are found by name)
    backend,
    clock,
    database_url,
    database_urls,
    pg_store,
    postgres_schema,
    postgres_server,
    postgres_url,
    sqlite_store,
    sqlite_url,
    store,
)
