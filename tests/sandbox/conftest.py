"""Clients for talking to the sandbox the way the connector would: over HTTP with httpx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connector.sandbox import RunningSandbox

ALL_CONTACT_FIELDS = "email_addresses,given_name,family_name,update_time,tag_ids"


@pytest.fixture
def api(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    """Keap v2 client authenticated with the sandbox's API key."""
    headers = {"X-Keap-API-Key": sandbox.api_key}
    with httpx.Client(base_url=f"{sandbox.base_url}/rest/v2", headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
def inspect(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sandbox.root_url}/_sandbox", timeout=10) as client:
        yield client


def all_pages(
    client: httpx.Client, path: str, key: str, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    token = ""
    while True:
        query = dict(params, page_token=token) if token else dict(params)
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        token = body["next_page_token"]
        if not token:
            return pages
