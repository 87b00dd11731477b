"""Fixtures of the report tests: a store on each backend, and the report of ``fill``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connector import report as rpt
from tests.report.data import NOW, WEEK, Db, fill, open_db


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    opened = await open_db(database_url)
    yield opened
    await opened.store.close()


@pytest.fixture
async def report(db: Db) -> rpt.Report:
    await fill(db)
    return await rpt.build_report(db.store, WEEK, NOW)
