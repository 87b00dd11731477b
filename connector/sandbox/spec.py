"""Checks HTTP requests against Keap's official REST v2 OpenAPI spec.

The spec file beside this module is ``sdks/v2/swagger.yml`` of Keap's official SDK repository
(``infusionsoft/keap-sdk`` @ d5b3dec2, Apache-2.0), byte for byte. The sandbox validates every
request it receives with this, and the client's unit tests validate every request they capture,
so a client that drifts from Keap's spec fails loudly instead of failing later against Keap.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from connector.sandbox.messages import decoded_path

# openapi-core warns that it cannot check the spec's OAuth2 scheme; credentials are the
# sandbox's own business, so the warning says nothing useful here.
warnings.filterwarnings("ignore", "Unsupported scheme type")

SPEC_FILE = "keap_v2_openapi.yml"
_SPEC_HOST = "https://api.keap.com"
_SPEC_PREFIX = "/crm"


@dataclass
class _Request:
    """The request shape openapi-core validates (its ``Request`` protocol)."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@cache
def _api() -> Any:
    text = files("connector.sandbox").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    # The spec is Keap's and known good; validating the 1.3 MB document itself takes ~7 s.
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


_LOCK = threading.Lock()


def violations(
    method: str,
    path: str,
    query: str = "",
    body: bytes | None = None,
    content_type: str = "",
    headers: dict[str, str] | None = None,
) -> list[str]:
    """Why Keap's spec rejects this request; empty when it accepts it.

    ``path`` is the raw (percent-encoded) path as sent, starting with ``/crm/rest/v2/`` or
    ``/rest/v2/``; ``query`` is the raw query string.
    """
    if not path.startswith(_SPEC_PREFIX + "/"):
        path = _SPEC_PREFIX + path
    request = _Request(
        host_url=_SPEC_HOST,
        path=decoded_path(path),
        method=method.lower(),
        body=body if body else None,
        content_type=(content_type or "").lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
            header=Headers(list((headers or {}).items())),
        ),
    )
    try:
        with _LOCK:
            _api().validate_request(request)
    except Exception as exc:  # openapi-core reports each kind of violation as its own class
        return [_explain(exc)]
    return []


def _explain(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None and len(parts) < 4:
        detail = str(cause)
        if detail and detail not in parts[-1]:
            parts.append(detail)
        cause = cause.__cause__
    return " | ".join(parts)[:2000]
