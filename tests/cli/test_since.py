"""``--since``: one grammar (``connector.durations.parse_since``) for ``sync`` and ``report``.

``events list`` and ``audit`` take no time filter (DESIGN.md section 5).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.cli import sync as sync_cli
from connector.cli import sync_view
from connector.sync.model import SyncOptions
from tests.cli.runner import run


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[SyncOptions]:
    """The options ``connector sync`` would run with; nothing reaches Keap or a store."""
    seen: list[SyncOptions] = []

    def command(settings: Any, options: SyncOptions, fmt: Any = None, **_: Any) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(sync_view, "command", command)
    monkeypatch.setattr(sync_cli, "settings", lambda: None)
    return seen


@pytest.mark.parametrize(
    ("given", "back"),
    [("7d", timedelta(days=7)), ("90m", timedelta(minutes=90)), ("4w", timedelta(weeks=4))],
)
def test_sync_since_takes_a_duration(
    planned: list[SyncOptions], given: str, back: timedelta
) -> None:
    before = datetime.now(UTC)
    code, _, err = run("sync", "--since", given, "--dry-run")
    after = datetime.now(UTC)
    assert (code, err) == (0, "")
    [options] = planned
    assert options.since is not None
    assert before - back <= options.since <= after - back
    assert options.dry_run


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC)),
        ("2025-01-31T12:30:00Z", datetime(2025, 1, 31, 12, 30, tzinfo=UTC)),
        ("2025-01-31T12:30:00+02:00", datetime(2025, 1, 31, 10, 30, tzinfo=UTC)),
    ],
)
def test_sync_since_takes_an_iso_time(
    planned: list[SyncOptions], given: str, expected: datetime
) -> None:
    code, _, err = run("sync", "--since", given)
    assert (code, err) == (0, "")
    assert planned[0].since == expected


def test_sync_without_since_scans_everything(planned: list[SyncOptions]) -> None:
    assert run("sync")[0] == 0
    assert planned[0].since is None


@pytest.mark.parametrize("bad", ["yesterday", "7x", "2025-13-01", "", "7d\x1b[31m", "٧d"])
@pytest.mark.parametrize("command", ["sync", "report"])
def test_a_bad_since_is_one_error_line(
    planned: list[SyncOptions],
    command: str,
    bad: str,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", sqlite_url)
    code, out, err = run(command, "--since", bad)
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --since")
    assert "\x1b" not in err
    assert planned == []


@pytest.mark.parametrize("since", ["7d", "2025-01-31", "2025-01-31T12:30:00Z"])
def test_report_takes_both_forms(
    since: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", sqlite_url)
    assert run("db", "migrate")[0] == 0
    code, out, err = run("report", "--since", since, "--format", "json")
    assert (code, err) == (0, "")
    assert out.lstrip().startswith("{")
