from __future__ import annotations

import pytest

from tests.fixtures_sandbox import SandboxFactory
from tests.sync.accounts import Account, account_for, seeded


@pytest.fixture
async def account(sandbox_factory: SandboxFactory, database_url: str) -> Account:
    return await account_for(sandbox_factory(seeded()), database_url)
