"""Write docs/report.png: the HTML report of demo-like data in headless Chromium at 1280 px.

The same code path as tests/report/test_browser.py (tests/report/browser.py builds the data,
renders the page and drives the system's Chromium), so the README shows what the test checks.

    .venv/bin/python scripts/report_screenshot.py [--output docs/report.png] [--first-screen]

Needs the Debian packages chromium and chromium-driver (`.ci/run` installs them when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.report.browser import chromium, chromium_missing, demo_page, look, screenshot  # noqa: E402
from tests.report.data import open_db  # noqa: E402


async def _page(directory: Path) -> Path:
    db = await open_db(f"sqlite:///{directory / 'report.db'}")
    try:
        _, page = await demo_page(db, directory)
    finally:
        await db.store.close()
    return page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "report.png")
    parser.add_argument("--first-screen", action="store_true", help="only the first 1280x800")
    args = parser.parse_args()
    missing = chromium_missing()
    if missing is not None:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as directory:
        page = asyncio.run(_page(Path(directory)))
        with chromium() as driver:
            seen = look(driver, page)
            if seen.scroll_width > seen.client_width:
                print("error: the page scrolls sideways at 1280 px", file=sys.stderr)
                return 1
            screenshot(driver, page, args.output, full_page=not args.first_screen)
    groups = ", ".join(seen.groups)
    print(f"wrote {args.output} ({groups})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
