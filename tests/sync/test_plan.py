"""A dry run plans through the worker's own ``pipeline.plan``: same steps, same skip reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.bounces import BounceType
from connector.keap.models import Contact, EmailAddress
from connector.policy import default_policy
from connector.store import NewEvent, Store
from connector.sync.run import plan_finding, plan_row
from connector.sync.scan import Finding

EMAIL = "ada@example.com"


def finding() -> Finding:
    address = EmailAddress(email=EMAIL, field="EMAIL1", email_opt_status="HARD_BOUNCE")
    contact = Contact(id="7", given_name="Ada", email_addresses=[address])
    return Finding(contact, address, "HARD_BOUNCE", BounceType.HARD_BOUNCE)


async def strike(store: Store, n: int) -> None:
    added = await store.add_event(
        NewEvent("webhook", "hard_bounce", "7", EMAIL, None, f"k{n}", "{}"), None
    )
    when = datetime.now(UTC) - timedelta(days=n)
    await store.record_strike(added.event_id, "7", EMAIL, "hard_bounce", when)


async def test_a_first_strike_is_planned_as_the_worker_would(store: Store) -> None:
    row = plan_row(finding(), await plan_finding(store, default_policy(), finding()))
    assert (row.rule, row.action, row.tags) == ("1", "none", "+First Hard Bounce")


async def test_a_third_strike_on_a_bounced_address_says_the_opt_out_is_skipped(
    store: Store,
) -> None:
    await strike(store, 2)
    await strike(store, 1)
    plan = await plan_finding(store, default_policy(), finding())
    row = plan_row(finding(), plan)
    assert row.action == "opt_out skipped (already non-marketable in Keap (HARD_BOUNCE))"
    assert "+Third Strike" in row.tags
