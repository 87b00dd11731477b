"""Keap listings that never end, for the paging guard and the stop tests.

``EndlessPages`` replaces one listing method of a real client, for the calls ``when`` picks:
the first page comes from the real call (unless ``lead`` is off), then empty pages follow,
each with a fresh ``next_page_token``, as a faulty Keap did (issue 13, item 5). ``on_page``
runs before each endless page, so a test can request a stop at a known call. Each page awaits
once, as a real round trip does, so the event loop can run signal handlers between pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from connector.keap.models import Page


class EndlessPages:
    def __init__(
        self,
        real: Callable[..., AsyncIterator[Page[Any]]] | None = None,
        *,
        on_page: Callable[[int], None] | None = None,
        when: Callable[[dict[str, Any]], bool] = lambda _: True,
        lead: bool = True,
    ) -> None:
        self.real = real
        self.on_page = on_page
        self.when = when
        self.lead = lead
        self.calls = 0

    async def __call__(self, **kwargs: Any) -> AsyncIterator[Page[Any]]:
        if not self.when(kwargs):
            assert self.real is not None
            async for page in self.real(**kwargs):
                yield page
            return
        token = kwargs.get("start_page_token")
        if self.lead and self.real is not None and token is None:
            async for page in self.real(**kwargs):
                token = "endless-0"
                yield Page(items=page.items, page_token=None, next_page_token=token)
                break
        n = 0
        while True:
            n += 1
            self.calls += 1
            if self.on_page is not None:
                self.on_page(self.calls)
            await asyncio.sleep(0)
            following = f"endless-{n}"
            yield Page(items=[], page_token=token, next_page_token=following)
            token = following
