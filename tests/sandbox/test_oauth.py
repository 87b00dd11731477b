from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connector.sandbox import RunningSandbox


def authorize_params(sandbox: RunningSandbox, redirect: str) -> dict[str, str]:
    return {
        "client_id": sandbox.client_id,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "full",
        "state": "xyz",
    }


def exchange(sandbox: RunningSandbox, code: str, redirect: str) -> httpx.Response:
    """The code exchange as Keap's PHP SDK sends it: credentials in the form body."""
    return httpx.post(
        sandbox.token_url,
        data={
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": redirect,
        },
    )


def refresh(sandbox: RunningSandbox, token: str) -> httpx.Response:
    return httpx.post(
        sandbox.token_url,
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(sandbox.client_id, sandbox.client_secret),
    )


def login(sandbox: RunningSandbox) -> dict[str, str]:
    body = exchange(sandbox, sandbox.mint_code(), sandbox.redirect_uri)
    assert body.status_code == 200, body.text
    result: dict[str, str] = body.json()
    return result


def userinfo(sandbox: RunningSandbox, access: str) -> httpx.Response:
    return httpx.get(
        f"{sandbox.base_url}/rest/v2/oauth/connect/userinfo",
        headers={"Authorization": f"Bearer {access}"},
    )


def test_authorization_page_allows_and_redirects_with_code_and_state(
    sandbox: RunningSandbox,
) -> None:
    redirect = "http://127.0.0.1:9/callback"
    page = httpx.get(sandbox.authorize_url, params=authorize_params(sandbox, redirect))
    assert page.status_code == 200
    assert "Allow" in page.text
    allow = page.text.split('id="allow" href="')[1].split('"')[0].replace("&amp;", "&")
    answer = httpx.get(f"{sandbox.root_url}{allow}")
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == redirect
    assert query["state"] == ["xyz"]
    tokens = exchange(sandbox, query["code"][0], redirect)
    assert tokens.status_code == 200
    assert set(tokens.json()) >= {"access_token", "refresh_token", "expires_in", "token_type"}


def test_authorization_page_refuses_a_foreign_client(sandbox: RunningSandbox) -> None:
    params = authorize_params(sandbox, "http://127.0.0.1:9/cb") | {"client_id": "someone-else"}
    assert httpx.get(sandbox.authorize_url, params=params).status_code == 400


def test_code_is_single_use_and_bound_to_its_redirect(sandbox: RunningSandbox) -> None:
    code = sandbox.mint_code("http://127.0.0.1:9/a")
    assert exchange(sandbox, code, "http://127.0.0.1:9/b").json()["error"] == "invalid_grant"
    code = sandbox.mint_code("http://127.0.0.1:9/a")
    assert exchange(sandbox, code, "http://127.0.0.1:9/a").status_code == 200
    assert exchange(sandbox, code, "http://127.0.0.1:9/a").status_code == 400


def test_refresh_rotates_and_rejects_a_reused_token(sandbox: RunningSandbox) -> None:
    first = login(sandbox)
    second = refresh(sandbox, first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    reused = refresh(sandbox, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    assert refresh(sandbox, second.json()["refresh_token"]).status_code == 200
    assert sandbox.stats()["refreshes"] == 2


def test_refresh_needs_basic_client_credentials(sandbox: RunningSandbox) -> None:
    token = login(sandbox)["refresh_token"]
    in_body = httpx.post(
        sandbox.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
    )
    assert in_body.status_code == 401
    wrong = httpx.post(
        sandbox.token_url,
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(sandbox.client_id, "wrong"),
    )
    assert wrong.status_code == 401


def test_token_endpoint_refuses_json(sandbox: RunningSandbox) -> None:
    response = httpx.post(sandbox.token_url, json={"grant_type": "refresh_token"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("sandbox", [{"token_ttl": 1.0}], indirect=True)
def test_access_token_expires_after_ttl(sandbox: RunningSandbox) -> None:
    access = login(sandbox)["access_token"]
    assert userinfo(sandbox, access).status_code == 200
    time.sleep(1.1)
    expired = userinfo(sandbox, access)
    assert expired.status_code == 401
    assert expired.json()["code"] == 401
    assert expired.json()["message"] == "Access token expired"


def test_expire_endpoint_then_refresh_recovers(sandbox: RunningSandbox) -> None:
    tokens = login(sandbox)
    assert httpx.post(f"{sandbox.root_url}/_sandbox/auth/expire").status_code == 200
    assert userinfo(sandbox, tokens["access_token"]).status_code == 401
    fresh = refresh(sandbox, tokens["refresh_token"]).json()
    assert userinfo(sandbox, fresh["access_token"]).status_code == 200


def test_revoked_grant_gives_invalid_grant(sandbox: RunningSandbox) -> None:
    tokens = login(sandbox)
    revoked = httpx.post(f"{sandbox.root_url}/_sandbox/auth/revoke")
    assert revoked.json() == {"revoked_refresh_tokens": 1}
    assert userinfo(sandbox, tokens["access_token"]).status_code == 401
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_api_key_must_be_known(sandbox: RunningSandbox) -> None:
    url = f"{sandbox.base_url}/rest/v2/users"
    assert httpx.get(url, headers={"X-Keap-API-Key": "nope"}).status_code == 401
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Keap-API-Key": sandbox.api_key}).status_code == 200


def test_mint_code_over_http(sandbox: RunningSandbox) -> None:
    redirect = "http://127.0.0.1:9/cb"
    code = httpx.post(f"{sandbox.root_url}/_sandbox/auth/code", json={"redirect_uri": redirect})
    assert exchange(sandbox, code.json()["code"], redirect).status_code == 200
