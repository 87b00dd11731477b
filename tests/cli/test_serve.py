"""``connector serve`` and ``worker``."""

from __future__ import annotations

import pytest

from tests.cli.runner import run


def test_serve_refuses_without_secret(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", database_url)
    code, _, err = run("serve")
    assert code == 1
    assert "CONNECTOR_WEBHOOK_SECRET" in err
