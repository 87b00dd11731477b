"""``connector doctor``: each check against the sandbox, a real store and broken settings.

The checks that open the store run on SQLite and on PostgreSQL (``database_url``). The SQLite
file checks (a missing file, its permissions) are SQLite only, and so are the tests of checks
that never open the store (settings, policy), which use ``sqlite_url`` as a place to point at.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector import doctor
from connector.config import Settings, load_settings
from connector.doctor import Check, check_throttle, diagnose, render, run_checks
from connector.errors import StoreUnavailableError
from connector.keap import auth
from connector.keap.tokens import OAuthToken
from connector.policy import write_default_policy
from connector.sandbox import RunningSandbox
from connector.store import PostgresStore, open_store
from connector.store.sqlite import SQLiteStore, sqlite_path
from tests.fixtures_store import DatabaseUrls

WEBHOOK_SECRET = "doctor-webhook-secret-0123456789"


async def migrated(url: str) -> str:
    store = await open_store(url, migrate=True)
    await store.close()
    return url


async def sandbox_settings(
    sandbox: RunningSandbox, url: str, *, oauth: bool = False, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        name.lower(): value for name, value in sandbox.env(oauth=oauth).items()
    }
    values.update(
        connector_database_url=await migrated(url),
        connector_webhook_secret=WEBHOOK_SECRET,
        keap_max_retry_seconds=5,
    )
    values.update(extra)
    return load_settings(**values)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_a_healthy_install_passes_every_check(
    sandbox: RunningSandbox, database_url: str, backend: str
) -> None:
    checks = await run_checks(await sandbox_settings(sandbox, database_url))
    file_modes = ["database permissions"] if backend == "sqlite" else []
    assert [c.name for c in checks] == [
        "settings",
        "webhook secret",
        "policy",
        "database",
        *file_modes,
        "keap credentials",
        "keap throttle",
    ]
    assert all(c.status == "ok" for c in checks), render(checks)
    assert not doctor.failed_any(checks)
    assert "built-in default policy" in by_name(checks)["policy"].detail
    assert "product" in by_name(checks)["keap throttle"].detail


async def test_render_is_one_line_per_check_with_the_fix_of_each_problem() -> None:
    checks = [
        Check("settings", True, "fine"),
        Check("database", False, "2 pending migrations", "run `connector db migrate`"),
        Check("webhook secret", True, "short", "generate one", warning=True),
    ]
    lines = render(checks).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("ok ")
    assert "fix" not in lines[0]
    assert lines[1].startswith("FAIL")
    assert lines[1].endswith("fix: run `connector db migrate`")
    assert lines[2].startswith("warn")
    assert "fix: generate one" in lines[2]
    assert doctor.failed_any(checks)


async def test_settings_that_do_not_load_are_one_failed_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", "mysql://db/connector")
    checks = await diagnose()
    assert len(checks) == 1
    assert checks[0].name == "settings"
    assert not checks[0].ok
    assert "CONNECTOR_DATABASE_URL" in checks[0].detail
    assert checks[0].fix


async def test_no_credentials_fail_settings_and_keap(database_url: str) -> None:
    settings = load_settings(connector_database_url=await migrated(database_url))
    checks = by_name(await run_checks(settings))
    assert not checks["settings"].ok
    assert "KEAP_API_KEY" in checks["settings"].fix
    assert not checks["keap credentials"].ok
    assert checks["webhook secret"].warning, "serve would refuse to start"


@pytest.mark.parametrize("variable", ["keap_api_base_url", "keap_token_url", "keap_authorize_url"])
async def test_plain_http_to_a_remote_keap_fails(
    sandbox: RunningSandbox, sqlite_url: str, variable: str
) -> None:
    overrides: dict[str, Any] = {variable: "http://keap.example.com"}
    settings = await sandbox_settings(sandbox, sqlite_url, **overrides)
    check = doctor._check_settings(settings)
    assert not check.ok
    assert variable.upper() in check.detail
    assert "https://" in check.fix


async def test_oauth_without_a_redirect_uri_is_a_warning(
    sandbox: RunningSandbox, sqlite_url: str
) -> None:
    settings = await sandbox_settings(sandbox, sqlite_url, oauth=True, keap_redirect_uri=None)
    check = doctor._check_settings(settings)
    assert check.ok
    assert check.warning
    assert "KEAP_REDIRECT_URI" in check.detail


def test_a_short_webhook_secret_is_a_warning() -> None:
    check = doctor._check_webhook(load_settings(connector_webhook_secret="short-secret"))
    assert check.warning
    assert "generate" in check.fix


async def test_a_missing_sqlite_file_fails_and_is_not_created(
    sandbox: RunningSandbox, sqlite_url: str, tmp_path: Path
) -> None:
    settings = await sandbox_settings(sandbox, sqlite_url)
    missing = tmp_path / "elsewhere" / "none.db"
    settings = settings.model_copy(update={"connector_database_url": f"sqlite:///{missing}"})
    checks = by_name(await run_checks(settings))
    assert not checks["database"].ok
    assert "connector db migrate" in checks["database"].fix
    assert not missing.exists()
    assert checks["keap credentials"].ok, "an API key does not need the store"


async def test_pending_migrations_fail_with_the_command_that_applies_them(
    sandbox: RunningSandbox, database_url: str, database_urls: DatabaseUrls
) -> None:
    settings = await sandbox_settings(sandbox, database_url)
    empty = database_urls("empty")
    store = await open_store(empty, check=False)
    await store.close()
    settings = settings.model_copy(update={"connector_database_url": empty})
    check = by_name(await run_checks(settings))["database"]
    assert not check.ok
    assert "pending migration" in check.detail
    assert check.fix == "run `connector db migrate`"


READ_ONLY = {
    "sqlite": "the SQLite store failed: attempt to write a readonly database",
    "postgresql": "the PostgreSQL store failed: cannot execute INSERT in a read-only transaction",
}


async def test_a_store_that_cannot_write_fails(
    sandbox: RunningSandbox, database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: SQLiteStore | PostgresStore, name: str, data: str) -> None:
        raise StoreUnavailableError(READ_ONLY[backend])

    monkeypatch.setattr(SQLiteStore, "save_checkpoint", refuse)
    monkeypatch.setattr(PostgresStore, "save_checkpoint", refuse)
    check = by_name(await run_checks(await sandbox_settings(sandbox, database_url)))["database"]
    assert not check.ok
    assert READ_ONLY[backend].split(": ", 1)[1] in check.detail
    assert "permissions" in check.fix


async def test_the_write_probe_leaves_no_checkpoint_data(
    sandbox: RunningSandbox, database_url: str
) -> None:
    settings = await sandbox_settings(sandbox, database_url)
    await run_checks(settings)
    store = await open_store(settings.connector_database_url)
    try:
        assert not await store.load_checkpoint(doctor.PROBE_CHECKPOINT)
    finally:
        await store.close()


async def test_a_database_readable_by_others_fails_with_chmod(
    sandbox: RunningSandbox, sqlite_url: str
) -> None:
    settings = await sandbox_settings(sandbox, sqlite_url)
    database = sqlite_path(sqlite_url)
    os.chmod(database, 0o644)
    check = by_name(await run_checks(settings))["database permissions"]
    assert not check.ok
    assert "0644" in check.detail
    assert check.fix.startswith(f"chmod 600 {database}")


async def test_an_unreachable_postgres_fails_without_showing_its_password(
    sandbox: RunningSandbox, sqlite_url: str
) -> None:
    settings = await sandbox_settings(sandbox, sqlite_url)
    url = "postgresql://connector:pw-hunter2-secret@127.0.0.1:1/connector"
    settings = settings.model_copy(update={"connector_database_url": url})
    checks = await run_checks(settings)
    check = by_name(checks)["database"]
    assert not check.ok
    assert "connector@127.0.0.1:1" in check.detail
    assert "hunter2" not in render(checks)


async def test_an_invalid_policy_file_fails_and_a_valid_one_counts_its_rules(
    sandbox: RunningSandbox, sqlite_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    settings = await sandbox_settings(sandbox, sqlite_url, connector_policy_file=policy)
    write_default_policy(policy)
    assert "rule(s)" in doctor._check_policy(settings).detail
    policy.write_text("[[rule]]\nbounce = 'no_such_type'\n", encoding="utf-8")
    check = doctor._check_policy(settings)
    assert not check.ok
    assert check.fix.startswith(f"run `connector policy check {policy}`")


async def test_a_wrong_api_key_fails_and_is_never_shown(
    sandbox: RunningSandbox, database_url: str
) -> None:
    wrong = "KeapAK-wrong-0123456789abcdef"
    checks = await run_checks(await sandbox_settings(sandbox, database_url, keap_api_key=wrong))
    check = by_name(checks)["keap credentials"]
    assert not check.ok
    assert "401" in check.detail
    assert "KEAP_API_KEY" in check.fix
    assert "keap throttle" not in by_name(checks), "no budget to read from a refusal"
    assert wrong not in render(checks)


async def test_an_unreachable_keap_fails_quickly(
    sandbox: RunningSandbox, database_url: str
) -> None:
    unreachable = "http://127.0.0.1:1"
    settings = await sandbox_settings(sandbox, database_url, keap_api_base_url=unreachable)
    check = by_name(await run_checks(settings))["keap credentials"]
    assert not check.ok
    assert "could not be reached" in check.detail
    assert "KEAP_API_BASE_URL" in check.fix, "not the worker's 'it will be retried'"


async def test_oauth_not_logged_in_fails_with_login(
    sandbox: RunningSandbox, database_url: str
) -> None:
    checks = by_name(await run_checks(await sandbox_settings(sandbox, database_url, oauth=True)))
    assert not checks["oauth token"].ok
    assert checks["oauth token"].fix == "run `connector auth login`"
    assert "keap credentials" not in checks


async def login(settings: Settings, sandbox: RunningSandbox) -> None:
    store = await open_store(settings.connector_database_url)
    try:
        await auth.begin_login(settings, store)
        await auth.complete_login(settings, store, sandbox.mint_code())
    finally:
        await store.close()


async def test_oauth_logged_in_shows_expiry_and_passes(
    sandbox: RunningSandbox, database_url: str
) -> None:
    settings = await sandbox_settings(sandbox, database_url, oauth=True)
    await login(settings, sandbox)
    checks = await run_checks(settings)
    named = by_name(checks)
    assert named["oauth token"].ok
    assert "valid until" in named["oauth token"].detail
    assert named["keap credentials"].ok
    assert "oauth accepted" in named["keap credentials"].detail
    assert not doctor.failed_any(checks), render(checks)


async def test_an_expired_oauth_token_is_refreshed_by_the_check(
    sandbox: RunningSandbox, database_url: str
) -> None:
    settings = await sandbox_settings(sandbox, database_url, oauth=True)
    await login(settings, sandbox)
    store = await open_store(settings.connector_database_url)
    try:
        token = await store.load_token()
        assert token is not None
        past = datetime.now(UTC) - timedelta(minutes=1)
        await store.save_token(OAuthToken(token.access_token, token.refresh_token, past))
    finally:
        await store.close()
    sandbox.expire_access_tokens()
    named = by_name(await run_checks(settings))
    assert named["oauth token"].warning
    assert "expired" in named["oauth token"].detail
    assert named["keap credentials"].ok, named["keap credentials"].detail
    assert "after refreshing" in named["keap credentials"].detail
    assert sandbox.stats()["refreshes"] == 1


async def test_a_revoked_grant_fails_with_login(sandbox: RunningSandbox, database_url: str) -> None:
    settings = await sandbox_settings(sandbox, database_url, oauth=True)
    await login(settings, sandbox)
    sandbox.revoke_grant()
    check = by_name(await run_checks(settings))["keap credentials"]
    assert not check.ok
    assert "auth login" in check.fix


@pytest.mark.parametrize("sandbox", [{"requests_per_second": 1.0}], indirect=True)
async def test_a_spent_keap_budget_fails(sandbox: RunningSandbox, database_url: str) -> None:
    settings = await sandbox_settings(sandbox, database_url, keap_requests_per_second=1.0)
    check = by_name(await run_checks(settings))["keap throttle"]
    assert not check.ok
    assert "product 0/1" in check.detail
    assert "KEAP_REQUESTS_PER_SECOND" in check.fix


def throttle(available: int, limit: int = 100, unit: str = "second") -> dict[str, str]:
    prefix = "x-keap-product-throttle"
    return {
        f"{prefix}-available": str(available),
        f"{prefix}-limit": str(limit),
        f"{prefix}-time-unit": unit,
        f"{prefix}-interval": "1",
    }


def test_throttle_headroom_levels() -> None:
    assert check_throttle(throttle(90), 10).status == "ok"
    assert check_throttle(throttle(10), 10).status == "warn"
    assert check_throttle(throttle(0), 10).status == "FAIL"
    assert check_throttle({}, 10).status == "warn"


def test_a_client_ceiling_above_keaps_limit_is_a_warning() -> None:
    check = check_throttle(throttle(1400, 1500, "minute"), 30)
    assert check.warning
    assert "above Keap's 25/s" in check.detail
    assert check.fix == "set KEAP_REQUESTS_PER_SECOND=25 or lower"


def test_the_tenant_budget_counts_too() -> None:
    headers = {**throttle(90), "x-keap-tenant-throttle-available": "0"}
    headers["x-keap-tenant-throttle-limit"] = "5000"
    check = check_throttle(headers, 10)
    assert not check.ok
    assert "tenant 0/5000" in check.detail
