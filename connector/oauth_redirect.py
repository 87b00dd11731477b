"""The OAuth2 redirect page ``connector serve`` answers at ``KEAP_REDIRECT_URI``'s path.

Keap sends the browser back there with ``code`` and ``state`` after the user allows access. The
page needs no webhook key (a browser brings none): the ``state`` is what ties it to a login that
``connector auth login`` or ``connector init`` started, and a missing or wrong one is a plain
``400`` page with nothing stored. The page is a template with autoescape and never shows the
code, a token or a secret; its headers keep the URL (which holds the code) out of caches and
out of the ``Referer`` of anything it links to.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    import jinja2

    from connector.config import Settings
    from connector.store import Store

RESERVED_PREFIXES = ("/keap/", "/healthz", "/readyz", "/metrics", "/openapi.json")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>{{ title }}</h1>
<p>{{ message }}</p>
<p>{{ next_step }}</p>
</body></html>
"""

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def redirect_path(redirect_uri: str) -> str:
    """The path of ``KEAP_REDIRECT_URI`` that ``serve`` answers (``/`` when it has none)."""
    return urlsplit(redirect_uri).path or "/"


def reserved(path: str) -> bool:
    """A path the webhook already answers; the redirect cannot share it."""
    return path == "/" or any(
        path.startswith(p) or path == p.rstrip("/") for p in RESERVED_PREFIXES
    )


@cache
def _template() -> jinja2.Template:
    import jinja2

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(_PAGE)


def page(status: int, title: str, message: str, next_step: str) -> Response:
    body = _template().render(title=title, message=message, next_step=next_step)
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    return proto.split(",")[0].strip().lower() == "https"


def redirect_route(settings: Settings, store: Store) -> Route:
    """The ``GET`` route at the redirect URI's path; ``settings`` must be an OAuth2 app's."""
    from connector.keap import auth

    assert settings.keap_redirect_uri is not None
    path = redirect_path(settings.keap_redirect_uri)

    async def redirected(request: Request) -> Response:
        if settings.connector_require_https and not _https(request):
            return page(
                403,
                "HTTPS required",
                "This page only answers over HTTPS (CONNECTOR_REQUIRE_HTTPS=true).",
                "Open it through the HTTPS address of KEAP_REDIRECT_URI.",
            )
        params = {name: value for name, value in request.query_params.items()}
        outcome = await auth.finish_redirect(settings, store, store, params)
        if outcome.refused:
            return page(
                400,
                "Login refused",
                f"This link does not belong to a login started here: {outcome.message}. "
                "Nothing was stored.",
                "Start a login with `connector auth login` and open the URL it prints.",
            )
        if not outcome.ok:
            return page(
                400,
                "Keap login failed",
                f"The login did not complete: {outcome.message}.",
                "Run `connector auth login` again.",
            )
        return page(
            200,
            "Connected to Keap",
            f"The connector is signed in to Keap ({outcome.message}).",
            "You can close this page; `connector auth login` has finished too.",
        )

    return Route(path, redirected, methods=["GET"])
