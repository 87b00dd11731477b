"""The token endpoint and the authorization page, as HTTP handlers.

Client credentials are accepted where Keap's own PHP SDK sends them: HTTP Basic for any grant,
and the form body for the code exchange only. A refresh with credentials in the body is
refused, so a client that drifts from Keap's documented refresh request fails here first.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
from urllib.parse import parse_qs, urlencode, urlsplit

from connector.sandbox.auth import AuthServer, OAuthError
from connector.sandbox.messages import Request, Response

AUTHORIZE_PATH = "/app/oauth/authorize"
ALLOW_PATH = "/app/oauth/authorize/allow"
CALLBACK_PATH = "/app/oauth/callback"
TOKEN_PATH = "/token"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class OAuthPages:
    def __init__(self, auth: AuthServer) -> None:
        self.auth = auth

    def token(self, request: Request) -> Response:
        try:
            return _oauth_json(200, self._grant(request))
        except OAuthError as exc:
            return _oauth_json(
                exc.status, {"error": exc.error, "error_description": exc.description}
            )

    def _grant(self, request: Request) -> dict[str, object]:
        if request.method != "POST":
            raise OAuthError(405, "invalid_request", "Use POST")
        if request.content_type != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "response_type or grant_type is required")
        form = {
            k: v[-1] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()
        }
        grant_type = form.get("grant_type", "")
        basic = _basic_credentials(request.header("authorization"))
        if grant_type == "authorization_code":
            client = basic or (form.get("client_id", ""), form.get("client_secret", ""))
            return self.auth.exchange_code(
                client, form.get("code", ""), form.get("redirect_uri", "")
            )
        if grant_type == "refresh_token":
            if basic is None:
                raise OAuthError(
                    401, "invalid_client", "Send client_id:client_secret as HTTP Basic to refresh"
                )
            return self.auth.refresh(basic, form.get("refresh_token", ""))
        if not grant_type:
            raise OAuthError(400, "invalid_request", "response_type or grant_type is required")
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type}")

    def authorize(self, request: Request) -> Response:
        params = {k: v[-1] for k, v in request.params.items()}
        problem = self._authorize_problem(params)
        if problem:
            return _page(400, "Authorization failed", f"<p>{html.escape(problem)}</p>")
        allow = f"{ALLOW_PATH}?{urlencode(params)}"
        deny = _with_query(params["redirect_uri"], {"error": "access_denied", **_state(params)})
        body = (
            "<p>The application <b>{}</b> asks for full access to the sandbox Keap app.</p>"
            '<p><a id="allow" href="{}">Allow</a> &nbsp; <a id="deny" href="{}">Deny</a></p>'
        ).format(html.escape(params["client_id"]), html.escape(allow), html.escape(deny))
        return _page(200, "Authorize application", body)

    def allow(self, request: Request) -> Response:
        params = {k: v[-1] for k, v in request.params.items()}
        problem = self._authorize_problem(params)
        if problem:
            return _page(400, "Authorization failed", f"<p>{html.escape(problem)}</p>")
        code = self.auth.mint_code(params["client_id"], params["redirect_uri"])
        location = _with_query(params["redirect_uri"], {"code": code, **_state(params)})
        return Response(302, b"", "text/plain", {"Location": location})

    def callback(self, request: Request) -> Response:
        code = html.escape(request.param("code") or "")
        body = (
            f"<p>Authorization code: <code id='code'>{code}</code></p>"
            f"<p>Finish with: <code>connector auth login --code {code}</code></p>"
        )
        return _page(200, "Sandbox authorization complete", body)

    def _authorize_problem(self, params: dict[str, str]) -> str:
        if params.get("client_id") != self.auth.client_id:
            return "Unknown client_id"
        if params.get("response_type") != "code":
            return "response_type must be code"
        if params.get("scope", "full") != "full":
            return "scope must be full"
        target = urlsplit(params.get("redirect_uri", ""))
        if target.scheme != "https" and not (
            target.scheme == "http" and target.hostname in _LOOPBACK
        ):
            return "redirect_uri must be https (or http on this machine)"
        return ""


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _state(params: dict[str, str]) -> dict[str, str]:
    return {"state": params["state"]} if "state" in params else {}


def _with_query(url: str, extra: dict[str, str]) -> str:
    joiner = "&" if urlsplit(url).query else "?"
    return f"{url}{joiner}{urlencode(extra)}"


def _oauth_json(status: int, payload: dict[str, object]) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return Response(status, json.dumps(payload).encode(), "application/json", headers)


def _page(status: int, title: str, body: str) -> Response:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )
    return Response(status, text.encode(), "text/html; charset=utf-8")
