"""The HTML report in headless Chromium at 1280x800: no sideways scrolling, the groups and their
counts, the contact links, a screenshot kept in the test's tmp dir, and a clean print."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from connector import report as rpt
from tests.report.browser import (
    CONTACT_URL,
    HEIGHT,
    WIDTH,
    chromium,
    chromium_missing,
    demo_page,
    look,
    screenshot,
)
from tests.report.data import Db, open_db

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One Chromium for the module. CI installs it (.ci/run); a missing one fails, never skips."""
    missing = chromium_missing()
    if missing is not None:
        pytest.fail(missing)
    with chromium() as driver:
        yield driver


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    """SQLite only: the page is the same whatever the store (tests/report covers both)."""
    opened = await open_db(f"sqlite:///{tmp_path / 'report.db'}")
    yield opened
    await opened.store.close()


async def test_report_page_in_chromium(db: Db, tmp_path: Path, browser: WebDriver) -> None:
    built, page = await demo_page(db, tmp_path)
    seen = await asyncio.to_thread(look, browser, page)

    assert seen.client_width == WIDTH
    assert seen.scroll_width <= seen.client_width, "the page scrolls sideways at 1280 px"

    expected: dict[str, int] = {}
    for row in built.rows:
        name = rpt.build.row_group(row).value.capitalize()
        expected[name] = expected.get(name, 0) + 1
    assert seen.groups == {f"{name} ({n})": n for name, n in expected.items()}
    assert set(expected) == {"Needs a person", "Done automatically", "Sender-side"}

    linked = {row.name: row.contact_id for row in built.rows if row.contact_id}
    assert len(seen.links) == len(linked)
    for text, href in seen.links:
        assert href == CONTACT_URL.replace("{contact_id}", linked[text])

    shot = tmp_path / "report-1280x800.png"
    await asyncio.to_thread(screenshot, browser, page, shot, full_page=False)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    width, height = _png_size(shot)
    assert (width, height) == (WIDTH, HEIGHT)


async def test_report_prints(db: Db, tmp_path: Path, browser: WebDriver) -> None:
    _, page = await demo_page(db, tmp_path)

    def pdf() -> bytes:
        browser.get(page.resolve().as_uri())
        printed = browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": False})
        return base64.b64decode(printed["data"])

    data = await asyncio.to_thread(pdf)
    assert data.startswith(b"%PDF")
    (tmp_path / "report.pdf").write_bytes(data)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
