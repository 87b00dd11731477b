"""Checks captured requests against Keap's official v2 spec.

``connector.sandbox.spec.violations`` validates method, path, parameter values and the JSON
body. It does not reject query parameters the operation does not declare (openapi-core ignores
them), so this guard also checks every query parameter name against the operation's list: a
misspelt ``page_tokn`` would otherwise pass here and be silently ignored by Keap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import yaml

from connector.sandbox.spec import SPEC_FILE, violations

_PREFIX = "/crm"


@cache
def _operations() -> list[tuple[str, re.Pattern[str], int, frozenset[str]]]:
    text = files("connector.sandbox").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    operations = []
    for template, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            names = frozenset(
                p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
            )
            operations.append((method.upper(), pattern, template.count("{"), names))
    return operations


def _declared_query(method: str, path: str) -> frozenset[str] | None:
    matches = [
        (n, names) for m, pattern, n, names in _operations() if m == method and pattern.match(path)
    ]
    return min(matches, key=lambda match: match[0])[1] if matches else None


def request_problems(request: httpx.Request) -> list[str]:
    """Why Keap's spec would reject ``request``; empty when it is accepted."""
    raw = request.url.raw_path.decode("ascii")
    path, _, query = raw.partition("?")
    # ``violations`` unquotes the whole path before routing, so an encoded ``/`` inside one
    # segment (an email like ``a/b@x.com``) would split it; route with a harmless stand-in.
    path = re.sub("%2F", "%5F", path, flags=re.IGNORECASE)
    spec_path = unquote(path.removeprefix(_PREFIX))
    problems = violations(
        request.method,
        path,
        query,
        request.content or None,
        request.headers.get("content-type", ""),
    )
    declared = _declared_query(request.method, spec_path)
    if declared is None:
        return [*problems, f"{request.method} {spec_path}: no such operation in the spec"]
    unknown = {name for name, _ in parse_qsl(query, keep_blank_values=True)} - declared
    if unknown:
        problems.append(f"{request.method} {spec_path}: undeclared query {sorted(unknown)}")
    return problems


def all_problems(requests: Iterable[httpx.Request]) -> list[str]:
    return [f"{r.method} {r.url}: {p}" for r in requests for p in request_problems(r)]
