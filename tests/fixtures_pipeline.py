"""The worker and pipeline against the sandbox: a harness that stores events and drains them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from connector.config import load_settings
from connector.keap.auth import ApiKeyAuth
from connector.keap.client import KeapClient
from connector.keap.retry import RateLimiter, RetryPolicy
from connector.metrics import Metrics
from connector.policy import Policy, default_policy
from connector.sandbox import RunningSandbox
from connector.sandbox.state import EmailItem
from connector.store import NewEvent, Store, open_store
from connector.worker import Worker, WorkerOptions

BACKOFF = 0.2  # seconds before a failed event is due again


async def after_backoff() -> None:
    await asyncio.sleep(BACKOFF + 0.05)


@dataclass
class Harness:
    sandbox: RunningSandbox
    store: Store
    client: KeapClient
    counter: int = 0
    retired: list[KeapClient] = field(default_factory=list)

    def worker(
        self, policy: Policy | None = None, *, metrics: Metrics | None = None, **options: object
    ) -> Worker:
        opts = WorkerOptions(base_backoff=BACKOFF, max_backoff=BACKOFF, **options)  # type: ignore[arg-type]  # options are WorkerOptions' own fields
        policy = policy or default_policy()
        return Worker(self.store, self.client, policy, metrics or Metrics(), opts)

    def quick_retries(self) -> None:
        """Keap calls give up after two fast attempts, so a failure reaches the worker at once."""
        self.retired.append(self.client)
        self.client = keap_client(
            self.sandbox,
            RetryPolicy(max_attempts=2, max_seconds=1.0, base_delay=0.0, max_delay=0.0),
        )

    def contact(self, *emails: str, status: str = "SINGLE_OPT_IN") -> int:
        items = [EmailItem(f"EMAIL{i + 1}", e, "test") for i, e in enumerate(emails)]
        contact = self.sandbox.state.add_contact("Ada", "Lovelace", items)
        for email in emails:
            self.sandbox.state.set_status(email, status)
        return contact.id

    async def event(self, contact_id: int | None, bounce: str, email: str | None = None) -> int:
        self.counter += 1
        added = await self.store.add_event(
            NewEvent(
                "webhook",
                bounce,
                None if contact_id is None else str(contact_id),
                email,
                None,
                f"test:{self.counter}",
                "{}",
            ),
            None,
        )
        return added.event_id

    def tags_of(self, contact_id: int) -> set[str]:
        state = self.sandbox.state
        return {state.tags[t].name for t in state.tag_ids_of(contact_id)}

    def notes_of(self, contact_id: int) -> list[str]:
        return [n.text for n in self.sandbox.state.notes_of(contact_id)]

    def status(self, email: str) -> str:
        address = self.sandbox.state.address(email)
        assert address is not None
        return address.status


@pytest.fixture
async def harness(sandbox: RunningSandbox, database_url: str) -> AsyncIterator[Harness]:
    """The worker against the sandbox, on each store backend (SQLite and PostgreSQL)."""
    store = await open_store(database_url, migrate=True)
    harness = Harness(sandbox, store, keap_client(sandbox))
    yield harness
    for client in [harness.client, *harness.retired]:
        await client.aclose()
    await store.close()


def keap_client(sandbox: RunningSandbox, retry: RetryPolicy | None = None) -> KeapClient:
    """A client of the sandbox with its API key, unthrottled on our side."""
    settings = load_settings(**{k.lower(): v for k, v in sandbox.env().items()})
    assert settings.keap_api_key is not None
    return KeapClient(
        settings,
        ApiKeyAuth(settings.keap_api_key),
        limiter=RateLimiter(1000.0),
        retry=retry or RetryPolicy.from_settings(settings),
    )
