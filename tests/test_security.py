"""The security review of issue 8, one test (or a few) per item.

Items: the webhook key is compared in constant time and never matches when empty; the key never
reaches a log line, uvicorn's included; OAuth tokens and the client secret never reach logs,
errors, ``repr``, ``auth status`` or the store's other tables; the database and its companion
files are created 0600; oversized or malformed requests get a 4xx, never a 5xx; and with
``CONNECTOR_REQUIRE_HTTPS=true`` a proxy's ``X-Forwarded-Proto: http`` is refused.

The process tests run the real ``connector`` command with every logger at DEBUG, which is the
level a user debugging a problem turns on, so that is where a leak would show first.

Everything that keeps a store runs on SQLite and on PostgreSQL; the file-mode checks are about
SQLite's files and run on SQLite only.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from connector.config import load_settings
from connector.errors import ConnectorError
from connector.keap import auth
from connector.keap.client import KeapClient
from connector.metrics import Metrics
from connector.sandbox import RunningSandbox
from connector.store import Store, open_store
from connector.webhook import MAX_BODY_BYTES, MAX_FIELDS, WebhookConfig, create_app
from tests.fixtures_connector import WEBHOOK_SECRET, Connector
from tests.fixtures_store import is_sqlite

SECRET = "sec-review-webhook-key-0123456789"
WRONG_KEY = "not-the-key-but-looks-like-one-42"
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON_TYPE = {"content-type": "application/json"}

# `connector` exactly as installed, but with every log level at DEBUG (no setting exists for it).
DEBUG_CONNECTOR = """
import logging, sys
import connector.logs as logs
import connector.cli as cli
configure = logs.configure
logs.configure = lambda log_format="text", level=logging.INFO: configure(log_format, logging.DEBUG)
cli.main()
"""


# --- in-process webhook ------------------------------------------------------------------


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url, migrate=True)
    yield opened
    await opened.close()


AppClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
def hook(store: Store) -> AppClient:
    """An httpx client on the webhook app; ``secret`` and ``require_https`` per test."""

    def make(secret: str = SECRET, require_https: bool = False) -> httpx.AsyncClient:
        config = WebhookConfig(secret, timedelta(minutes=10), require_https=require_https)
        app = create_app(config, store, Metrics())
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://hook")

    return make


async def post(
    client: httpx.AsyncClient,
    body: str | bytes = "contactId=12",
    *,
    key: str | None = SECRET,
    headers: dict[str, Any] | None = None,
    path: str = "/keap/bounce/hard_bounce",
) -> httpx.Response:
    params = {} if key is None else {"key": key}
    sent = {**FORM, **(headers or {})}
    async with client:
        return await client.post(path, params=params, content=body, headers=sent)


# --- constant-time comparison ------------------------------------------------------------


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every call the webhook makes to ``hmac.compare_digest``, which still does the work."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        calls.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr("connector.webhook.hmac.compare_digest", spy)
    return calls


async def test_the_key_is_compared_with_compare_digest(
    hook: AppClient, compared: list[tuple[bytes, bytes]]
) -> None:
    assert (await post(hook(), key=WRONG_KEY)).status_code == 401
    assert (await post(hook(), key=SECRET)).status_code == 202
    by_header = {"x-connector-key": WRONG_KEY}
    assert (await post(hook(), key=None, headers=by_header)).status_code == 401
    assert compared == [
        (WRONG_KEY.encode(), SECRET.encode()),
        (SECRET.encode(), SECRET.encode()),
        (WRONG_KEY.encode(), SECRET.encode()),
    ]


@pytest.mark.parametrize(
    ("key", "headers"),
    [(None, {}), ("", {}), (None, {"x-connector-key": ""}), ("", {"x-connector-key": ""})],
    ids=["absent", "empty-query", "empty-header", "both-empty"],
)
@pytest.mark.parametrize("secret", [SECRET, ""], ids=["secret", "empty-secret"])
async def test_an_empty_or_absent_key_never_matches(
    hook: AppClient, store: Store, key: str | None, headers: dict[str, str], secret: str
) -> None:
    reply = await post(hook(secret), key=key, headers=headers)
    assert reply.status_code == 401
    assert await store.list_events() == []


async def test_a_non_ascii_key_is_refused_not_crashed(hook: AppClient) -> None:
    assert (await post(hook(), key="kéy-ü-\u2603")).status_code == 401
    latin1: dict[str, Any] = {"x-connector-key": b"k\xe9y"}
    assert (await post(hook(), key=None, headers=latin1)).status_code == 401


# --- request size and field limits -------------------------------------------------------


def padded(size: int) -> str:
    """A valid callback of exactly ``size`` bytes."""
    head = "contactId=12&pad="
    return head + "x" * (size - len(head))


async def test_a_body_of_exactly_the_limit_is_accepted(hook: AppClient) -> None:
    assert (await post(hook(), padded(MAX_BODY_BYTES))).status_code == 202


async def test_a_body_over_the_limit_is_413(hook: AppClient, store: Store) -> None:
    reply = await post(hook(), padded(MAX_BODY_BYTES + 1))
    assert reply.status_code == 413
    assert await store.list_events() == []


async def test_a_chunked_body_over_the_limit_is_413(hook: AppClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"contactId=12&pad="
        for _ in range(100):
            yield b"x" * 1024

    async with hook() as client:
        reply = await client.post(
            "/keap/bounce/hard_bounce", params={"key": SECRET}, content=chunks(), headers=FORM
        )
    assert reply.status_code == 413


@pytest.mark.parametrize("kind", ["form", "json"])
async def test_more_than_the_field_limit_is_400(hook: AppClient, kind: str) -> None:
    names = [f"f{i}" for i in range(MAX_FIELDS)] + ["contactId"]
    if kind == "form":
        reply = await post(hook(), "&".join(f"{n}=1" for n in names))
    else:
        body = json.dumps(dict.fromkeys(names, "1"))
        reply = await post(hook(), body, headers=JSON_TYPE)
    assert reply.status_code == 400
    assert str(MAX_FIELDS) in reply.json()["error"]


async def test_exactly_the_field_limit_is_accepted(hook: AppClient) -> None:
    names = [f"f{i}" for i in range(MAX_FIELDS - 1)] + ["contactId"]
    assert (await post(hook(), "&".join(f"{n}=1" for n in names))).status_code == 202


LONG = "9" * 60_000


@pytest.mark.parametrize(
    ("body", "headers", "path"),
    [
        (f"contactId={LONG}", FORM, "/keap/bounce/hard_bounce"),
        (f"contactId=1&bounce_type={'x' * 60_000}", FORM, "/keap/bounce"),
        (f"contactId=1&count={LONG}", FORM, "/keap/bounce/hard_bounce"),
        ("contactId=1", FORM, "/keap/bounce/" + "y" * 30_000),
        (json.dumps({"n" * 60_000: {"a": 1}}), JSON_TYPE, "/keap/bounce/hard_bounce"),
        (json.dumps({"contactId": "~Contact.Id~" * 4000}), JSON_TYPE, "/keap/bounce/hard_bounce"),
    ],
    ids=["contact-id", "bounce-type", "count", "path", "field-name", "merge-field"],
)
async def test_very_long_values_are_400_with_a_short_reason(
    hook: AppClient, body: str, headers: dict[str, str], path: str
) -> None:
    reply = await post(hook(), body, headers=headers, path=path)
    assert reply.status_code == 400
    assert len(reply.content) < 1000, "the reason must not echo the value"


async def test_a_very_long_email_is_refused_not_stored(hook: AppClient, store: Store) -> None:
    """DESIGN 1a: a posted email that is not an address is a 400, never "no address"."""
    reply = await post(hook(), f"contactId=1&Email={'a' * 30_000}@example.com")
    assert reply.status_code == 400
    assert "not an email address" in reply.json()["error"]
    assert await store.list_events() == []


@pytest.mark.parametrize(
    "body",
    [
        "[" * 30_000 + "]" * 30_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"contactId": "1", "x": ' + "[" * 20_000 + "]" * 20_000 + "}",
        '{"contactId": "1", "x": {"y": {"z": 1}}}',
    ],
    ids=["array", "object", "nested-field", "shallow-object-field"],
)
async def test_deeply_nested_json_is_400(hook: AppClient, body: str) -> None:
    assert len(body.encode()) <= MAX_BODY_BYTES
    reply = await post(hook(), body, headers=JSON_TYPE)
    assert reply.status_code == 400


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\xff\xfe\x00contactId=1", FORM),
        (b"contactId=1\x00", FORM),
        (b'{"contactId": 1e999999}', JSON_TYPE),
        (b'{"contactId": NaN}', JSON_TYPE),
        (b"contactId=1", {"content-type": "text/xml"}),
        (b"contactId=1", {"content-type": b"application/json; charset=\xff"}),
    ],
    ids=["not-utf8", "nul", "huge-number", "nan", "xml", "odd-charset"],
)
async def test_odd_bodies_are_4xx(hook: AppClient, body: bytes, headers: dict[str, Any]) -> None:
    reply = await post(hook(), body, headers=headers)
    assert 400 <= reply.status_code < 500


# --- CONNECTOR_REQUIRE_HTTPS -------------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "expected"),
    [(None, 403), ("http", 403), ("HTTP", 403), ("https", 202), ("https, http", 202)],
)
async def test_require_https_trusts_the_proxys_forwarded_proto(
    hook: AppClient, proto: str | None, expected: int
) -> None:
    headers = {} if proto is None else {"x-forwarded-proto": proto}
    reply = await post(hook(require_https=True), headers=headers)
    assert reply.status_code == expected


async def test_require_https_is_checked_before_the_key(hook: AppClient) -> None:
    """Over plain http the answer is the same for a right and a wrong key: nothing to probe."""
    plain = {"x-forwarded-proto": "http"}
    assert (await post(hook(require_https=True), key=WRONG_KEY, headers=plain)).status_code == 403
    secure = {"x-forwarded-proto": "https"}
    assert (await post(hook(require_https=True), key=WRONG_KEY, headers=secure)).status_code == 401


async def test_plain_http_is_accepted_when_https_is_not_required(hook: AppClient) -> None:
    assert (await post(hook(), headers={"x-forwarded-proto": "http"})).status_code == 202


# --- access log --------------------------------------------------------------------------


async def test_the_access_log_has_method_path_status_and_no_query(
    hook: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="connector.access")
    await post(hook(), key=WRONG_KEY)
    await post(hook(), key=SECRET)
    lines = [r.getMessage() for r in caplog.records if r.name == "connector.access"]
    assert len(lines) == 2
    assert re.fullmatch(r"POST /keap/bounce/hard_bounce 401 \d+\.\dms", lines[0])
    assert re.fullmatch(r"POST /keap/bounce/hard_bounce 202 \d+\.\dms", lines[1])
    levels = [r.levelno for r in caplog.records if r.name == "connector.access"]
    assert levels == [logging.INFO, logging.DEBUG], "refusals show at the default level"


async def test_the_access_log_cannot_be_forged_through_the_path(
    hook: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="connector.access")
    await post(hook(), path="/keap/bounce/x%0aFAKE%20200%20line" + "z" * 1000)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "connector.access"]
    assert "\n" not in line
    assert len(line) < 300


# --- the real processes ------------------------------------------------------------------


DATABASE_PASSWORD = "db-password-never-logged-42"


@pytest.fixture
def connector_database_url(database_url: str) -> str:
    """The install's store, on each backend. A PostgreSQL URL gets a password if it has none
    (the test server trusts local connections, so it is not checked); it must never be printed."""
    parts = urlsplit(database_url)
    if is_sqlite(database_url) or parts.password:
        return database_url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}:{DATABASE_PASSWORD}@{host}"))


def database_secrets(install: Connector) -> list[str]:
    password = urlsplit(install.database_url).password
    return [password] if password else []


@pytest.fixture
def debug_connector(connector: Connector) -> Connector:
    """The shared e2e install, run with every logger at DEBUG so nothing can hide there."""
    connector.argv = [sys.executable, "-c", DEBUG_CONNECTOR]
    return connector


def stored_outside_the_token_table(database_url: str) -> str:
    """Every row of every table but ``oauth_tokens``, the one place tokens belong."""
    if not is_sqlite(database_url):
        return _postgres_rows_outside_the_token_table(database_url)
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        rows = [
            repr(row)
            for table in tables
            if table != "oauth_tokens"
            for row in conn.execute(f"SELECT * FROM {table}")
        ]
    finally:
        conn.close()
    return "\n".join(rows)


def _postgres_rows_outside_the_token_table(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        tables = [
            str(row[0])
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        ]
        assert "oauth_tokens" in tables, tables
        rows = [
            repr(row)
            for table in tables
            if table != "oauth_tokens"
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        ]
    return "\n".join(rows)


def unauthorised_query_keys(text: str) -> list[str]:
    """``key=`` anywhere but in the placeholder URL ``serve`` prints on start."""
    return re.findall(r"key=(?!<CONNECTOR_WEBHOOK_SECRET>)\S*", text)


@pytest.mark.slow
@pytest.mark.parametrize("require_https", [False, True], ids=["http", "require-https"])
def test_serve_never_logs_the_key(
    debug_connector: Connector, sandbox: RunningSandbox, require_https: bool
) -> None:
    install = debug_connector
    install.env["CONNECTOR_REQUIRE_HTTPS"] = str(require_https).lower()
    served = install.serve()
    contact = sandbox.state.contact_ids[0]
    proxied = {"x-forwarded-proto": "https"} if require_https else {}
    path = "/keap/bounce/hard_bounce"
    replies = {
        "good": served.post(path, f"contactId={contact}", headers=proxied),
        "wrong": served.post(path, "contactId=1", key=WRONG_KEY, headers=proxied),
        "header": served.post(
            path, "contactId=1", key=None, headers={**proxied, "x-connector-key": WRONG_KEY}
        ),
        "unknown path": served.post("/nowhere", "x", key=WRONG_KEY),
        "too large": served.post(path, padded(MAX_BODY_BYTES + 10), headers=proxied),
        "bad body": served.post(path, "nothing=1", headers=proxied),
    }
    plain = served.post(path, "contactId=1")
    install.wait_until_settled(1)
    served.stop()
    printed = install.printed()
    assert [r.status_code for r in replies.values()] == [202, 401, 401, 404, 413, 400]
    assert plain.status_code == (403 if require_https else 202)
    for secret in (WEBHOOK_SECRET, WRONG_KEY, sandbox.api_key, *database_secrets(install)):
        assert secret not in printed
    assert unauthorised_query_keys(printed) == []
    assert "POST /keap/bounce/hard_bounce 401" in printed, "the access log is on, query-less"
    assert "POST /keap/bounce/hard_bounce 202" in printed, "DEBUG shows successes too"
    if install.on_sqlite:
        assert_owner_only(install.database)


@pytest.mark.slow
def test_oauth_tokens_and_client_secret_never_leak(
    debug_connector: Connector, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    install = debug_connector
    issued = record_issued_tokens(sandbox, monkeypatch)
    install.env.pop("KEAP_API_KEY")
    install.env.update(sandbox.env(oauth=True))
    assert install.run("auth", "login", "--print-url").returncode == 0
    code = sandbox.mint_code()
    assert (
        install.run("auth", "login", "--code", f"{sandbox.redirect_uri}?code={code}").returncode
        == 0
    )
    status = install.run("auth", "status")
    assert status.returncode == 0, status.stderr
    assert install.run("auth", "refresh").returncode == 0
    served = install.serve()
    contacts = sandbox.state.contact_ids
    for number, contact in enumerate(contacts[:2]):
        if number:
            sandbox.expire_access_tokens()
        reply = served.post("/keap/bounce/hard_bounce", f"contactId={contact}")
        assert reply.status_code == 202
        install.wait_until_settled(number + 1)
    served.stop()
    install.run("audit")
    install.run("events", "show", "1")
    sandbox.revoke_grant()
    revoked = install.run("auth", "refresh")
    assert revoked.returncode == 1
    install.env["KEAP_CLIENT_SECRET"] = "wrong-client-secret-123456"
    assert install.run("auth", "refresh").returncode == 1

    assert sandbox.stats()["refreshes"] >= 2, "the flows really refreshed"
    secrets = [sandbox.client_secret, code, *issued]
    printed = install.printed()
    stored = stored_outside_the_token_table(install.database_url)
    assert "Bearer" not in printed
    for secret in secrets:
        assert secret not in printed
        assert secret not in stored
    for secret in database_secrets(install):
        assert secret not in printed
    if install.on_sqlite:
        database = install.database
        assert_owner_only(database)
        assert_owner_only(database.with_name(database.name + ".refresh.lock"))


def record_issued_tokens(sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every access and refresh token the sandbox hands out, for grepping afterwards."""
    issued: list[str] = []
    original = sandbox.app.auth._issue

    def issue() -> dict[str, object]:
        answer = original()
        issued.extend([str(answer["access_token"]), str(answer["refresh_token"])])
        return answer

    monkeypatch.setattr(sandbox.app.auth, "_issue", issue)
    return issued


async def test_tokens_never_in_repr_errors_or_raw_log_records(
    sandbox: RunningSandbox,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = record_issued_tokens(sandbox, monkeypatch)
    values = {k.lower(): v for k, v in sandbox.env(oauth=True).items()}
    settings = load_settings(**values, connector_database_url=database_url)
    store = await open_store(settings.connector_database_url, migrate=True)
    texts: list[str] = []
    try:
        await auth.begin_login(settings, store)
        status = await auth.complete_login(settings, store, sandbox.mint_code())
        credentials = auth.build_credentials(settings, store)
        async with KeapClient(settings, credentials) as client:
            await client.get_contact(str(sandbox.state.contact_ids[0]))
            sandbox.expire_access_tokens()
            await client.get_contact(str(sandbox.state.contact_ids[1]))
            texts += [repr(client), repr(credentials), repr(await store.load_token())]
        sandbox.revoke_grant()
        with pytest.raises(ConnectorError) as revoked:
            await auth.refresh_now(settings, store)
        texts += [str(revoked.value), repr(revoked.value), repr(status), status.summary]
    finally:
        await store.close()
    texts += [repr(settings), str(settings.model_dump()), caplog.text]
    assert len(issued) == 4
    for secret in [sandbox.client_secret, *issued]:
        assert all(secret not in text for text in texts), secret


# --- file modes --------------------------------------------------------------------------


def assert_owner_only(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"{path.name} is {mode:04o}"


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


async def test_the_store_and_its_companion_files_are_0600(tmp_path: Path, umask: int) -> None:
    """SQLite only: its database, WAL, shared-memory and lock files (PostgreSQL keeps none)."""
    path = tmp_path / "fresh" / "connector.db"
    store = await open_store(f"sqlite:///{path}", migrate=True)
    try:
        await store.save_checkpoint("probe", "x")
        async with store.refresh_lock():
            pass
        companions = [path, path.with_name("connector.db-wal"), path.with_name("connector.db-shm")]
        for file in [*companions, path.with_name("connector.db.refresh.lock")]:
            assert_owner_only(file)
    finally:
        await store.close()
