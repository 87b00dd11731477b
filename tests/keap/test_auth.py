"""API-key and OAuth2 credentials: login, rotation-safe refresh, status, and secret hygiene."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from connector.config import Settings
from connector.errors import (
    AuthFlowError,
    ConfigError,
    InputError,
    KeapUnauthorizedError,
    KeapUnavailableError,
    NotAuthenticatedError,
    TokenRevokedError,
)
from connector.keap import auth
from connector.keap.auth import ApiKeyAuth, OAuthApp, OAuthManager, TokenEndpoint
from connector.keap.client import KeapClient
from tests.keap.fakes import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    FakeTokenServer,
    InMemoryTokenStore,
    WallClock,
    make_token,
)

REDIRECT = "https://connector.example.com/oauth/callback"
CONTACT = {"id": "101", "email_addresses": []}


@pytest.fixture
def oauth_settings() -> Settings:
    return Settings(
        keap_client_id=CLIENT_ID,
        keap_client_secret=CLIENT_SECRET,
        keap_redirect_uri=REDIRECT,
        keap_user_id="42",
    )


@pytest.fixture
def server() -> FakeTokenServer:
    return FakeTokenServer()


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


def manager(
    settings: Settings, store: InMemoryTokenStore, server: FakeTokenServer, wall: WallClock
) -> OAuthManager:
    credentials = auth.build_credentials(settings, store, adapter=server, now=wall)
    assert isinstance(credentials, OAuthManager)
    return credentials


def bearer_gate(
    valid: str, log: list[str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """Keap answering 200 only to ``valid``; records the token each request used."""

    def answer(request: httpx.Request) -> httpx.Response:
        used = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if log is not None:
            log.append(f"use {used}")
        if used == valid:
            return httpx.Response(200, json=CONTACT)
        return httpx.Response(401, json={"code": 401, "message": "Invalid Access Token"})

    return answer


# --- API key --------------------------------------------------------------------------------


async def test_api_key_is_sent_as_x_keap_api_key() -> None:
    credentials = auth.build_credentials(Settings(keap_api_key=API_KEY), None)

    assert isinstance(credentials, ApiKeyAuth)
    assert await credentials.headers() == {"X-Keap-API-Key": API_KEY}
    assert await credentials.on_unauthorized({}) is False
    assert API_KEY not in repr(credentials)


async def test_api_key_wins_over_oauth(oauth_settings: Settings) -> None:
    settings = oauth_settings.model_copy(
        update={"keap_api_key": Settings(keap_api_key=API_KEY).keap_api_key}
    )

    assert isinstance(auth.build_credentials(settings, InMemoryTokenStore()), ApiKeyAuth)


def test_no_credentials_at_all_says_how_to_get_some() -> None:
    with pytest.raises(NotAuthenticatedError, match="KEAP_API_KEY"):
        auth.build_credentials(Settings(), InMemoryTokenStore())


def test_oauth_without_a_client_secret_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="KEAP_CLIENT_SECRET"):
        auth.build_credentials(Settings(keap_client_id=CLIENT_ID), InMemoryTokenStore())


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://api.example.com/token", False),
        ("http://127.0.0.1:8765/token", True),
        ("http://localhost:8765/token", True),
        ("https://api.infusionsoft.com/token", True),
    ],
)
def test_token_url_must_be_https_except_on_loopback(
    oauth_settings: Settings, url: str, ok: bool
) -> None:
    settings = oauth_settings.model_copy(update={"keap_token_url": url})

    if ok:
        assert OAuthApp.from_settings(settings).token_url == url
    else:
        with pytest.raises(ConfigError, match="KEAP_TOKEN_URL"):
            OAuthApp.from_settings(settings)


# --- login ----------------------------------------------------------------------------------


async def test_begin_login_builds_keaps_authorization_url_with_a_saved_state(
    oauth_settings: Settings,
) -> None:
    store = InMemoryTokenStore()

    url = await auth.begin_login(oauth_settings, store)

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == oauth_settings.keap_authorize_url
    assert query["response_type"] == "code"
    assert query["scope"] == "full"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT
    assert store.state is not None
    assert len(store.state) >= 20
    assert query["state"] == store.state
    assert CLIENT_SECRET not in url


async def test_login_needs_a_redirect_uri(oauth_settings: Settings) -> None:
    settings = oauth_settings.model_copy(update={"keap_redirect_uri": None})

    with pytest.raises(ConfigError, match="KEAP_REDIRECT_URI"):
        await auth.begin_login(settings, InMemoryTokenStore())


async def test_complete_login_from_the_redirect_url_checks_state_and_stores_tokens(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    store = InMemoryTokenStore()
    url = await auth.begin_login(oauth_settings, store)
    state = parse_qs(urlsplit(url).query)["state"][0]
    answer = f"{REDIRECT}?code={server.valid_code}&state={state}&scope=full"

    status = await auth.complete_login(oauth_settings, store, answer, adapter=server, now=wall)

    sent = server.requests[-1]
    assert sent.form == {
        "grant_type": "authorization_code",
        "code": server.valid_code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert sent.content_type == "application/x-www-form-urlencoded"
    assert store.token is not None
    assert store.token.refresh_token.get_secret_value() == server.valid_refresh
    assert store.token.expires_at == wall() + timedelta(seconds=3600)
    assert status.logged_in
    assert status.scope == "full|xy123.infusionsoft.com"
    assert store.state is None


async def test_complete_login_accepts_a_bare_code(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    store = InMemoryTokenStore()
    await auth.begin_login(oauth_settings, store)

    status = await auth.complete_login(
        oauth_settings, store, f"  {server.valid_code}\n", adapter=server, now=wall
    )

    assert status.logged_in
    assert server.requests[-1].form["code"] == server.valid_code


@pytest.mark.parametrize("saved", ["the-state-we-printed", None])
async def test_complete_login_refuses_a_foreign_state(
    oauth_settings: Settings, server: FakeTokenServer, saved: str | None
) -> None:
    store = InMemoryTokenStore()
    store.state = saved

    with pytest.raises(AuthFlowError, match="state"):
        await auth.complete_login(
            oauth_settings, store, f"{REDIRECT}?code=c0de12345&state=forged", adapter=server
        )

    assert server.requests == []
    assert store.token is None


async def test_complete_login_reports_a_refused_authorization(
    oauth_settings: Settings, server: FakeTokenServer
) -> None:
    with pytest.raises(AuthFlowError, match="access_denied"):
        await auth.complete_login(
            oauth_settings, InMemoryTokenStore(), f"{REDIRECT}?error=access_denied", adapter=server
        )


async def test_complete_login_with_a_bad_code_is_an_auth_flow_error(
    oauth_settings: Settings, server: FakeTokenServer
) -> None:
    store = InMemoryTokenStore()
    await auth.begin_login(oauth_settings, store)
    with pytest.raises(AuthFlowError, match="authorization code"):
        await auth.complete_login(oauth_settings, store, "wrong-code", adapter=server)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("abc123", ("abc123", None)),
        ("https://x.example/cb?code=abc&state=s1", ("abc", "s1")),
        ("?code=abc", ("abc", None)),
        ("code=abc&state=s2", ("abc", "s2")),
    ],
)
def test_parse_login_answer(answer: str, expected: tuple[str, str | None]) -> None:
    assert auth.parse_login_answer(answer) == expected


@pytest.mark.parametrize("answer", ["", "   ", "https://x.example/cb?state=s1"])
def test_parse_login_answer_without_a_code(answer: str) -> None:
    with pytest.raises(AuthFlowError):
        auth.parse_login_answer(answer)


# --- refresh --------------------------------------------------------------------------------


async def test_refresh_uses_http_basic_and_a_form_body(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() - timedelta(seconds=1)))

    await manager(oauth_settings, store, server, wall).headers()

    sent = server.requests[-1]
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert sent.authorization == f"Basic {expected}"
    assert sent.form == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-token-0001-uvwxyz",
    }
    assert sent.content_type == "application/x-www-form-urlencoded"


async def test_twenty_concurrent_calls_with_an_expired_token_refresh_once(
    oauth_settings: Settings,
    server: FakeTokenServer,
    wall: WallClock,
    keap: respx.MockRouter,
    make_client: Callable[..., KeapClient],
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() - timedelta(minutes=1)))
    credentials = manager(oauth_settings, store, server, wall)
    client = make_client(oauth_settings, credentials)
    route = keap.get("/contacts/101").mock(
        side_effect=bearer_gate("access-token-0002-abcdef", store.events)
    )

    contacts = await asyncio.gather(*(client.get_contact("101") for _ in range(20)))

    assert len(contacts) == 20
    assert server.refreshes == 1
    assert credentials.refreshes == 1
    assert route.call_count == 20
    assert store.token is not None
    assert store.token.refresh_token.get_secret_value() == "refresh-token-0002-uvwxyz"
    assert store.events[0] == "save access-token-0002-abcdef"
    assert set(store.events[1:]) == {"use access-token-0002-abcdef"}


async def test_a_second_process_sees_the_rotated_token_and_does_not_refresh(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() - timedelta(minutes=1)))
    first = manager(oauth_settings, store, server, wall)
    second = manager(oauth_settings, store, server, wall)

    heads = await asyncio.gather(*(m.headers() for m in [first, second] * 10))

    assert server.refreshes == 1
    assert {h["Authorization"] for h in heads} == {"Bearer access-token-0002-abcdef"}
    assert first.refreshes + second.refreshes == 1


async def test_a_401_refreshes_once_and_resends_once(
    oauth_settings: Settings,
    server: FakeTokenServer,
    wall: WallClock,
    keap: respx.MockRouter,
    make_client: Callable[..., KeapClient],
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() + timedelta(hours=12)))
    client = make_client(oauth_settings, manager(oauth_settings, store, server, wall))
    route = keap.get("/contacts/101").mock(side_effect=bearer_gate("access-token-0002-abcdef"))

    contact = await client.get_contact("101")

    assert contact.id == "101"
    assert route.call_count == 2
    assert server.refreshes == 1


async def test_a_401_after_the_refresh_is_final(
    oauth_settings: Settings,
    server: FakeTokenServer,
    wall: WallClock,
    keap: respx.MockRouter,
    make_client: Callable[..., KeapClient],
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() + timedelta(hours=12)))
    client = make_client(oauth_settings, manager(oauth_settings, store, server, wall))
    route = keap.get("/contacts/101").respond(401, json={"code": 401})

    with pytest.raises(KeapUnauthorizedError):
        await client.get_contact("101")

    assert route.call_count == 2
    assert server.refreshes == 1


async def test_a_401_after_another_process_refreshed_uses_the_stored_token(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() + timedelta(hours=12)))
    credentials = manager(oauth_settings, store, server, wall)
    sent = await credentials.headers()
    store.token = make_token(7, wall() + timedelta(hours=24))

    assert await credentials.on_unauthorized(sent) is True

    assert server.refreshes == 0
    assert await credentials.headers() == {"Authorization": "Bearer access-token-0007-abcdef"}


@pytest.mark.parametrize(
    ("lifetime", "left", "refreshed"),
    [
        (timedelta(hours=24), timedelta(minutes=10), False),
        (timedelta(hours=24), timedelta(minutes=4), True),
        (timedelta(seconds=60), timedelta(seconds=30), False),
        (timedelta(seconds=60), timedelta(seconds=5), True),
    ],
)
async def test_tokens_are_refreshed_ahead_of_expiry(
    oauth_settings: Settings,
    server: FakeTokenServer,
    wall: WallClock,
    lifetime: timedelta,
    left: timedelta,
    refreshed: bool,
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() + lifetime))
    credentials = manager(oauth_settings, store, server, wall)
    await credentials.headers()
    wall.advance(lifetime - left)

    await credentials.headers()

    assert server.refreshes == (1 if refreshed else 0)


async def test_invalid_grant_tells_the_user_to_log_in_again(
    oauth_settings: Settings,
    server: FakeTokenServer,
    wall: WallClock,
    keap: respx.MockRouter,
    make_client: Callable[..., KeapClient],
) -> None:
    server.valid_refresh = "someone-else-rotated-it"
    store = InMemoryTokenStore(make_token(1, wall() - timedelta(minutes=1)))
    client = make_client(oauth_settings, manager(oauth_settings, store, server, wall))
    route = keap.get("/contacts/101").respond(200, json=CONTACT)

    with pytest.raises(TokenRevokedError) as caught:
        await client.get_contact("101")

    assert "connector auth login" in str(caught.value)
    assert route.call_count == 0
    assert server.refreshes == 1


async def test_token_endpoint_outage_is_retryable_not_a_logout(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    server.override = lambda request: (503, {"message": "upstream down"})
    store = InMemoryTokenStore(make_token(1, wall() - timedelta(minutes=1)))

    with pytest.raises(KeapUnavailableError):
        await manager(oauth_settings, store, server, wall).headers()

    assert store.token is not None
    assert store.token.refresh_token.get_secret_value() == "refresh-token-0001-uvwxyz"


async def test_wrong_client_credentials_are_a_config_error(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    server.override = lambda request: (401, {"error": "invalid_client"})
    store = InMemoryTokenStore(make_token(1, wall() - timedelta(minutes=1)))

    with pytest.raises(ConfigError, match="KEAP_CLIENT_SECRET"):
        await manager(oauth_settings, store, server, wall).headers()


async def test_no_stored_token_means_log_in(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    with pytest.raises(NotAuthenticatedError, match="connector auth login"):
        await manager(oauth_settings, InMemoryTokenStore(), server, wall).headers()


# --- status, refresh, logout ----------------------------------------------------------------


async def test_status_in_each_mode(oauth_settings: Settings, wall: WallClock) -> None:
    store = InMemoryTokenStore()

    keyed = await auth.auth_status(Settings(keap_api_key=API_KEY), store)
    nothing = await auth.auth_status(Settings(), store)
    logged_out = await auth.auth_status(oauth_settings, store, now=wall)
    store.token = make_token(1, wall() - timedelta(seconds=5))
    expired = await auth.auth_status(oauth_settings, store, now=wall)

    assert (keyed.mode, keyed.logged_in) == ("api_key", True)
    assert (nothing.mode, nothing.logged_in) == ("none", False)
    assert (logged_out.mode, logged_out.logged_in) == ("oauth", False)
    assert "connector auth login" in logged_out.summary
    assert (expired.logged_in, expired.expired, expired.expires_at) == (
        True,
        True,
        store.token.expires_at,
    )
    assert expired.scope == "full|xy123.infusionsoft.com"
    for status in (keyed, expired):
        assert "access-token" not in repr(status) + status.summary
        assert API_KEY not in repr(status) + status.summary


async def test_refresh_now_refreshes_a_fresh_token(
    oauth_settings: Settings, server: FakeTokenServer, wall: WallClock
) -> None:
    store = InMemoryTokenStore(make_token(1, wall() + timedelta(hours=20)))

    status = await auth.refresh_now(oauth_settings, store, adapter=server, now=wall)

    assert server.refreshes == 1
    assert status.expires_at == wall() + timedelta(seconds=3600)
    assert store.token is not None
    assert store.token.refresh_token.get_secret_value() == "refresh-token-0002-uvwxyz"


async def test_refresh_now_with_an_api_key_explains_why_not() -> None:
    with pytest.raises(InputError, match="API key"):
        await auth.refresh_now(Settings(keap_api_key=API_KEY), InMemoryTokenStore())


async def test_logout_forgets_tokens_and_pending_login(wall: WallClock) -> None:
    store = InMemoryTokenStore(make_token(1, wall()))
    store.state = "pending"

    await auth.logout(store)

    assert store.token is None
    assert store.state is None


# --- secrets --------------------------------------------------------------------------------


async def test_secrets_never_reach_repr_logs_or_errors(
    oauth_settings: Settings,
    server: FakeTokenServer,
    wall: WallClock,
    keap: respx.MockRouter,
    make_client: Callable[..., KeapClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = InMemoryTokenStore()
    await auth.begin_login(oauth_settings, store)
    await auth.complete_login(oauth_settings, store, server.valid_code, adapter=server, now=wall)
    credentials = manager(oauth_settings, store, server, wall)
    client = make_client(oauth_settings, credentials)
    token = store.token
    assert token is not None
    keap.get("/contacts/101").mock(
        side_effect=lambda r: httpx.Response(
            400, text=f"echo {r.headers['Authorization']} {token.refresh_token.get_secret_value()}"
        )
    )
    errors: list[Exception] = []
    try:
        await client.get_contact("101")
    except Exception as exc:
        errors.append(exc)
    await credentials.force_refresh()
    server.valid_refresh = "gone"
    try:
        await credentials.force_refresh()
    except TokenRevokedError as exc:
        errors.append(exc)

    secrets = [
        CLIENT_SECRET,
        server.valid_code,
        token.access_token.get_secret_value(),
        token.refresh_token.get_secret_value(),
        "access-token-0003-abcdef",
        "refresh-token-0003-uvwxyz",
    ]
    texts: list[Any] = [
        repr(credentials),
        repr(client),
        repr(oauth_settings),
        repr(token),
        caplog.text,
    ]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    assert len(errors) == 2
    for secret in secrets:
        assert all(secret not in text for text in texts), secret


async def test_token_endpoint_repr_hides_the_client_secret(oauth_settings: Settings) -> None:
    endpoint = TokenEndpoint(OAuthApp.from_settings(oauth_settings))

    assert CLIENT_SECRET not in repr(endpoint.app)
