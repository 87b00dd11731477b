"""The HTML report in a real browser: headless Chromium from Debian, driven by Selenium.

Shared by ``tests/report/test_browser.py`` and ``scripts/report_screenshot.py`` (which writes
``docs/report.png``), so the README's screenshot comes from the code path the test checks.

The browser is the system's (``/usr/bin/chromium`` with ``/usr/bin/chromedriver``, Debian
packages ``chromium`` and ``chromium-driver``; ``.ci/run`` installs them when missing): nothing
is downloaded, and Selenium's driver manager is never asked for one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector import report as rpt
from connector.bounces import BounceType
from connector.pipeline.outcome import Outcome, Reason, SkipReason, StepKind, StepRecord, to_audit
from tests.report.data import NOW, Db

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
WIDTH, HEIGHT = 1280, 800
CONTACT_URL = "https://yourapp.infusionsoft.com/Contact/manageContact.jsp?view=edit&ID={contact_id}"


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium() -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        viewport(driver, WIDTH, HEIGHT)
        yield driver
    finally:
        driver.quit()


def viewport(driver: WebDriver, width: int, height: int) -> None:
    """The page's viewport exactly (the window's size would include the browser's frame)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


# --- demo-like data ----------------------------------------------------------------------------

_PEOPLE: list[tuple[str, str, str, str, list[tuple[float, str]], str]] = [
    # id, given, family, address, [(days ago, type)], what the connector did
    ("1001", "Maria", "Lopez", "maria.lopez@gmail.com", [(6, "hard_bounce"), (4, "hard_bounce"),
     (1, "hard_bounce")], "opt_out"),
    ("1002", "James", "O'Brien", "jobrien@comcast.net", [(5, "hard_bounce")], "tag"),
    ("1003", "Aiko", "Tanaka", "aiko@tanaka-design.jp", [(3, "soft_bounce_mailbox_full"),
     (2, "soft_bounce_mailbox_full")], "tag"),
    ("1004", "Priya", "Raman", "priya.raman@outlook.com", [(6, "hard_bounce"), (2, "hard_bounce"),
     (0.2, "hard_bounce")], "blank"),
    ("1005", "Tom", "Becker", "tom@becker-law.de", [(2, "hard_bounce")], "protected"),
    ("1006", "Sofia", "Rossi", "sofia.rossi@yahoo.it", [(1, "general_bounce")], "failed"),
    ("1007", "Liam", "Walsh", "liam.walsh@bigcorp.example", [(4, "mail_block_spam_detected"),
     (3, "mail_block_spam_detected")], "tag"),
    ("1008", "Chen", "Wei", "chen.wei@bigcorp.example", [(3, "mail_block_general")], "tag"),
    ("1009", "Emma", "Johansson", "emma.j@icloud.com", [(5, "auto_reply")], "none"),
    ("1010", "Noah", "Williams", "noah.w@hotmail.com", [(1, "transient_bounce")], "tag"),
    ("1011", "Fatima", "Haddad", "f.haddad@gmail.com", [(0.5, "unsubscribe_request")], "opt_out"),
]  # fmt: skip


_TAGS = {
    "hard_bounce": "Hard Bounce",
    "mail_block_spam_detected": "Mail Block - Sender Review",
    "mail_block_general": "Mail Block - Sender Review",
}


async def _record(db: Db, event: int, contact: str, record: StepRecord) -> None:
    await db.store.write_audit(
        to_audit(record, event_id=event, contact_id=contact, detail=None, dry_run=False)
    )


async def fill_demo(db: Db) -> None:
    """A week of a small Keap account: every group, names, several bounce types and days."""
    for contact, given, family, address, bounces, did in _PEOPLE:
        events = [
            await db.event(
                days, contact, address, BounceType(kind), None if did == "failed" else "done"
            )
            for days, kind in bounces
        ]
        last = events[-1]
        target: dict[str, str | None] = {
            "email": address,
            "field": "EMAIL1",
            "evidence": "posted address",
        }
        target |= {"given_name": given, "family_name": family}
        db.clock.at(NOW - timedelta(days=bounces[-1][0]) + timedelta(minutes=1))
        await _record(
            db, last, contact, StepRecord(StepKind.TARGET, "", Outcome.DONE, after=target)
        )
        where: dict[str, str | None] = {"email": address, "field": "EMAIL1"}
        if did == "opt_out":
            await _record(
                db, last, contact, StepRecord(StepKind.OPT_OUT, "", Outcome.DONE, after=where)
            )
            title = f"Find a new email address for {given} {family}"
            await _record(db, last, contact, StepRecord(StepKind.TASK, title, Outcome.DONE))
        elif did == "blank":
            blank = StepRecord(StepKind.BLANK_EMAIL, "EMAIL1", Outcome.DONE, before=where)
            await _record(db, last, contact, blank)
            await _record(db, last, contact, StepRecord(StepKind.NOTE, "", Outcome.DONE))
        elif did == "protected":
            skip = Reason(SkipReason.PROTECTED)
            await _record(
                db, last, contact, StepRecord(StepKind.OPT_OUT, "", Outcome.SKIPPED, skip)
            )
        elif did == "failed":
            await db.store.fail_event(last, "Keap answered 503; retrying", NOW)
        if did in ("tag", "opt_out", "blank", "protected"):
            tag = _TAGS.get(bounces[-1][1], "Bounced")
            await _record(db, last, contact, StepRecord(StepKind.TAG_ADD, tag, Outcome.DONE))
    # Someone Keap posted with an address only, not matched to a contact yet.
    await db.event(0.3, None, "unknown@example.org", BounceType.UNDETERMINED, None)


async def demo_page(db: Db, directory: Path) -> tuple[rpt.Report, Path]:
    await fill_demo(db)
    built = await rpt.build_report(db.store, NOW - timedelta(days=7), NOW)
    page = directory / "report.html"
    page.write_text(rpt.render_html(built, contact_url=CONTACT_URL), encoding="utf-8")
    return built, page


# --- what the browser sees ---------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    scroll_width: int
    client_width: int
    groups: dict[str, int]  # heading text -> rows in that group's table
    links: list[tuple[str, str]]  # (text, href) of every link


_PROBE = """
const root = document.documentElement;
const groups = {};
for (const h of document.querySelectorAll('h2[id]')) {
  const table = document.querySelector('table.contacts.' + h.id);
  groups[h.textContent.trim()] = table ? table.querySelectorAll('tbody tr').length : 0;
}
const links = [...document.querySelectorAll('a')].map(a => [a.textContent, a.href]);
return JSON.stringify({scroll: root.scrollWidth, client: root.clientWidth, groups, links});
"""


def look(driver: WebDriver, page: Path) -> Seen:
    driver.get(page.resolve().as_uri())
    data: dict[str, Any] = json.loads(driver.execute_script(_PROBE))
    return Seen(
        data["scroll"],
        data["client"],
        data["groups"],
        [tuple(x) for x in data["links"]],
    )


def screenshot(driver: WebDriver, page: Path, target: Path, *, full_page: bool) -> None:
    """The page at 1280 px wide: the first screen, or the whole page (the window made as tall
    as the document)."""
    driver.get(page.resolve().as_uri())
    if full_page:
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        viewport(driver, WIDTH, height)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not driver.save_screenshot(str(target)):
            raise RuntimeError(f"Chromium could not write {target}")
    finally:
        viewport(driver, WIDTH, HEIGHT)
