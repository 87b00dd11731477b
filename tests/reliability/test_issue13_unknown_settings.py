"""Issue 13 item 16: a mistyped setting (``KEAP_APIKEY``) is reported, never silently ignored.

DESIGN.md section 4: a ``KEAP_*`` or ``CONNECTOR_*`` variable the connector does not know, in the
environment or in ``.env``, is reported with the closest known name: a warning line on stderr
for every command, a failure in ``doctor``. The value is never shown (it may be a secret).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import Settings, unknown_variables
from connector.doctor import run_checks
from tests.cli.runner import run

SECRET_VALUE = "s3cr3t-value-never-shown"


def test_item16_a_mistyped_variable_in_the_environment_warns_on_every_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEAP_APIKEY", SECRET_VALUE)
    code, out, err = run("policy", "show")
    assert code == 0
    warnings = [line for line in err.splitlines() if "KEAP_APIKEY" in line]
    assert warnings == ["warning: KEAP_APIKEY: unknown; did you mean KEAP_API_KEY?"]
    assert SECRET_VALUE not in out + err


def test_item16_a_mistyped_variable_in_dotenv_warns_too() -> None:
    Path(".env").write_text(f"CONNECTOR_WEBHOOK_SECRT={SECRET_VALUE}\nKEAP_USER_ID=7\n")
    code, _, err = run("policy", "show")
    assert code == 0
    assert (
        "warning: CONNECTOR_WEBHOOK_SECRT: unknown; did you mean CONNECTOR_WEBHOOK_SECRET? "
        "(in .env)" in err.splitlines()
    )
    assert "KEAP_USER_ID" not in err
    assert SECRET_VALUE not in err


def test_item16_names_are_matched_like_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("keap_api_key", "x" * 20)  # pydantic-settings reads names case-blind
    monkeypatch.setenv("CONNECTOR_ZZZ", "1")
    monkeypatch.setenv("TEST_POSTGRES_URL", "postgresql://x")  # not ours: never reported
    found = {u.name: u for u in unknown_variables()}
    assert set(found) == {"CONNECTOR_ZZZ"}
    assert found["CONNECTOR_ZZZ"].describe() == "CONNECTOR_ZZZ: unknown"


async def test_item16_doctor_fails_on_an_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEAP_APIKEY", SECRET_VALUE)
    checks = {c.name: c for c in await run_checks(Settings())}  # no Keap call: no credentials
    settings = checks["settings"]
    assert not settings.ok
    assert "KEAP_APIKEY: unknown; did you mean KEAP_API_KEY?" in settings.detail
    assert "rename KEAP_APIKEY to KEAP_API_KEY" in settings.fix
    assert SECRET_VALUE not in settings.detail + settings.fix
