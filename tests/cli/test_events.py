"""``connector events``, ``audit``: inspecting stored events, and outside data shown inert."""

from __future__ import annotations

import asyncio

import pytest

from connector.store import AuditWrite, NewEvent, StepStatus, open_store
from tests.cli.runner import run


def test_events_retry_needs_an_id_or_failed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    run("db", "migrate")
    code, _, err = run("events", "retry")
    assert code == 1
    assert "--failed" in err
    code, _, err = run("events", "retry", "99")
    assert code == 1
    assert "no event 99" in err
    code, _, err = run("events", "show", "99")
    assert code == 1


HOSTILE = [
    "a@[/red]",
    "[link=https://evil.example]x[/link]@y.com",
    "x\x1b[31m@y.com\n2026-01-01 forged",
]


async def _store_hostile_events(url: str) -> list[int]:
    ids = []
    store = await open_store(url, migrate=True)
    try:
        for n, email in enumerate(HOSTILE):
            added = await store.add_event(
                NewEvent(
                    source="webhook",
                    bounce_type="hard_bounce",
                    contact_id=f"{n}[/b]\x1b[2J",
                    email=email,
                    keap_count=1,
                    dedupe_key=f"hostile-{n}",
                    raw=f"Email={email}",
                ),
                None,
            )
            ids.append(added.event_id)
            await store.write_audit(
                AuditWrite(
                    event_id=added.event_id,
                    contact_id=f"{n}[/b]",
                    step=f"tag_add:{email}\r\x9b31m",
                    kind="tag_add",
                    status=StepStatus.DONE,
                )
            )
    finally:
        await store.close()
    return ids


def _assert_inert(out: str) -> None:
    assert "\x1b" not in out
    assert "\x9b" not in out
    assert "\r" not in out
    assert not any(line.lstrip("│ ").startswith("2026-01-01 forged") for line in out.splitlines())
    assert "Traceback" not in out


def test_outside_data_is_shown_inert(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 item 1: markup, ANSI escapes and newlines from Keap or a callback are text."""
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", sqlite_url)
    ids = asyncio.run(_store_hostile_events(sqlite_url))

    code, out, err = run("events", "list")
    assert (code, err) == (0, "")
    _assert_inert(out)
    assert "a***@[/red]" in out  # masked, and the markup shown as written
    assert "[/b]\\x1b[2J" in out

    code, out, err = run("audit")
    assert (code, err) == (0, "")
    _assert_inert(out)
    assert "add tag 'a@[/red]\\r\\x9b31m': done" in out
    assert "[link=https://evil.example]x[/link]@y.com" in out
    assert "@y.com\\n2026-01-01 forged" in out  # (scrub masks the address's local part)

    for event_id in ids:
        code, out, err = run("events", "show", str(event_id))
        assert (code, err) == (0, "")
        _assert_inert(out)
    assert "\\n2026-01-01 forged\\r\\x9b31m': done" in out  # the address part is masked
    code, out, _ = run("events", "show", str(ids[1]))
    assert "[link=https://evil.example]x[/link]@y.com" in out
