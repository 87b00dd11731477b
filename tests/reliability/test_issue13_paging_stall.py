"""Issue 13 item 5 (follow-up): a page token Keap hands out twice is an error, not an end.

The client used to end a listing quietly (a warning in the log) when Keap repeated a page token,
so ``connector sync`` reported itself complete after reading part of the account. The client now
raises :class:`~connector.errors.PagingStalledError`, the same error the sync's paging guard
raises, and the run stops with it, its checkpoint kept.
"""

from __future__ import annotations

import httpx
import pytest

from connector.config import Settings
from connector.errors import PagingStalledError, PermanentError
from connector.keap.auth import ApiKeyAuth
from connector.keap.client import KeapClient
from connector.keap.retry import RateLimiter, RetryPolicy
from connector.sync import scan

ANSWERS = {
    None: {"contacts": [{"id": "1"}], "next_page_token": "A"},
    "A": {"contacts": [{"id": "2"}], "next_page_token": "B"},
    "B": {"contacts": [{"id": "3"}], "next_page_token": "A"},
}


def _client() -> KeapClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=ANSWERS[request.url.params.get("page_token")])

    settings = Settings(keap_api_key="k" * 24, keap_user_id="1")
    assert settings.keap_api_key is not None
    return KeapClient(
        settings,
        ApiKeyAuth(settings.keap_api_key),
        limiter=RateLimiter(1000.0),
        retry=RetryPolicy(max_attempts=1, max_seconds=1.0),
        transport=httpx.MockTransport(answer),
    )


async def test_item5_a_repeated_page_token_from_keap_is_a_stalled_listing_not_the_end() -> None:
    ids: list[str] = []

    async def read(client: KeapClient) -> None:
        async for page in client.iter_contacts():
            ids.extend(c.id for c in page.items)

    async with _client() as client:
        with pytest.raises(PagingStalledError, match=r"/contacts: Keap handed out page token"):
            await read(client)
    assert ids == ["1", "2"]  # the page that repeats a token is not handed on


def test_item5_the_sync_guard_and_the_client_raise_one_error_class() -> None:
    assert scan.PagingStalledError is PagingStalledError
    assert issubclass(PagingStalledError, PermanentError)
