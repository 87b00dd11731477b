"""A sandbox account and a store to run ``connector sync`` against, in-process.

Every test that keeps a store runs on SQLite and on PostgreSQL (``database_url``/``database_urls``).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from connector.cli.sync_view import OutputFormat, render_dry_run
from connector.config import Settings, load_settings
from connector.sandbox import RunningSandbox, SandboxOptions
from connector.store import Store, open_store
from connector.sync import SyncOptions, SyncSummary, run_sync

MAPPED = {"HARD_BOUNCE", "BOUNCE"}
ANCHOR_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: seeded update times fall in 2025
QUIET = SyncOptions(install_signal_handlers=False)


@dataclass
class Account:
    sandbox: RunningSandbox
    settings: Settings

    async def sync(
        self,
        out: io.StringIO | None = None,
        fmt: OutputFormat = OutputFormat.TABLE,
        **changes: Any,
    ) -> SyncSummary:
        """A run; a dry run's plan is rendered on ``out`` as ``connector sync`` would."""
        summary = await run_sync(self.settings, replace(QUIET, **changes))
        if summary.plan is not None:
            render_dry_run(summary.plan, fmt, out or io.StringIO())
        return summary

    def bounced(self) -> dict[tuple[int, str], str]:
        """(contact, address) -> status for every address in a mapped status, any field."""
        state = self.sandbox.state
        found = {}
        for contact in state.contacts.values():
            for _, email in contact.emails:
                address = state.address(email)
                if address is not None and address.status in MAPPED:
                    found[(contact.id, email.lower())] = address.status
        return found

    def tagged(self, name: str) -> set[int]:
        return next(
            (set(t.contacts) for t in self.sandbox.state.tags.values() if t.name == name), set()
        )

    def notes(self) -> Counter[int]:
        return Counter(n.contact_id for n in self.sandbox.state.notes.values())

    def writes(self) -> list[dict[str, Any]]:
        return [e for e in self.sandbox.stats()["log"] if e["method"] != "GET"]

    def statuses(self) -> dict[str, str]:
        return {k: a.status for k, a in self.sandbox.state.addresses.items()}


async def account_for(sandbox: RunningSandbox, url: str) -> Account:
    store = await open_store(url, migrate=True)
    await store.close()
    env = {k.lower(): v for k, v in sandbox.env().items()}
    settings = load_settings(
        **env, connector_database_url=url, keap_requests_per_second=150.0, keap_user_id="1"
    )
    return Account(sandbox, settings)


def seeded(**changes: Any) -> SandboxOptions:
    base = SandboxOptions(
        contacts=2500,
        bounced_fraction=0.04,
        seed=11,
        requests_per_second=1000.0,
        data_anchor_ms=ANCHOR_MS,
    )
    return replace(base, **changes)


async def with_store(account: Account) -> Store:
    return await open_store(account.settings.connector_database_url)


def expected_hard(account: Account) -> tuple[set[int], Counter[int]]:
    hard = [key for key, status in account.bounced().items() if status == "HARD_BOUNCE"]
    return {cid for cid, _ in hard}, Counter(cid for cid, _ in hard)
