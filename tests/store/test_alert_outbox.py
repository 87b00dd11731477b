"""The alert outbox (DESIGN 7a), on both backends: stored before sent, once per kind and subject
an hour, claimed by one sender at a time, delivery recorded per channel.

Times come from a fake clock moved by hand; nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from connector.alerts import Alert, AlertKind, raise_alert
from connector.store import Store, open_store

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
WEEK = timedelta(days=7)


def dead(event_id: int) -> Alert:
    return Alert(AlertKind.DEAD_EVENT, f"event {event_id}", "it died", {"event": str(event_id)})


async def test_the_same_kind_and_subject_is_stored_at_most_once_an_hour(store: Store) -> None:
    assert await raise_alert(store, dead(1), T0)
    assert not await raise_alert(store, dead(1), T0 + timedelta(minutes=59, seconds=59))
    # another subject, or another kind with the same subject, is its own alert
    assert await raise_alert(store, dead(2), T0 + timedelta(minutes=1))
    other_kind = Alert(AlertKind.BACKLOG, "event 1", "slow")
    assert await raise_alert(store, other_kind, T0 + timedelta(minutes=2))
    # the window slides from the last stored raise
    assert await raise_alert(store, dead(1), T0 + timedelta(hours=1))
    assert not await raise_alert(store, dead(1), T0 + timedelta(hours=1, minutes=30))
    assert await raise_alert(store, dead(1), T0 + timedelta(hours=2, minutes=1))

    listed = await store.list_alerts(limit=10)
    assert [(a.kind, a.subject) for a in listed] == [
        ("dead_event", "event 1"),
        ("dead_event", "event 1"),
        ("backlog", "event 1"),
        ("dead_event", "event 2"),
        ("dead_event", "event 1"),
    ]
    first = listed[-1]
    assert first.raised_at == T0
    assert first.details == {"event": "1"}
    assert first.text == "it died"
    assert first.delivered == {}
    assert first.attempts == 0
    assert first.done_at is None
    assert [a.subject for a in await store.list_alerts(limit=2)] == ["event 1", "event 1"]


async def test_concurrent_raises_of_one_alert_store_it_once(
    database_url: str, store: Store
) -> None:
    """Two store connections (as two replicas have) raising the same alert together."""
    other = await open_store(database_url)
    try:
        results = await asyncio.gather(*(raise_alert(s, dead(7), T0) for s in [store, other] * 10))
    finally:
        await other.close()
    assert sum(results) == 1
    assert len(await store.list_alerts()) == 1


async def test_claims_hold_an_alert_for_one_sender_and_record_delivery_per_channel(
    store: Store,
) -> None:
    await raise_alert(store, dead(1), T0)
    await raise_alert(store, dead(2), T0)

    claimed = await store.claim_alerts(10, LEASE, "a", T0, T0 - WEEK)
    assert [a.subject for a in claimed] == ["event 1", "event 2"]
    assert all(a.attempts == 1 for a in claimed)
    assert await store.claim_alerts(10, LEASE, "b", T0, T0 - WEEK) == []

    # the email went, the webhook did not: retry later, the email is remembered
    retry = T0 + timedelta(minutes=1)
    assert await store.finish_alert(claimed[0].id, "a", T0, {"email": T0}, "webhook: down", retry)
    assert await store.finish_alert(
        claimed[1].id, "a", T0, {"email": T0, "webhook": T0}, None, None
    )
    assert await store.claim_alerts(10, LEASE, "b", T0, T0 - WEEK) == []  # not due yet

    again = await store.claim_alerts(10, LEASE, "b", retry, T0 - WEEK)
    assert [a.id for a in again] == [claimed[0].id]
    assert again[0].delivered == {"email": T0}
    assert again[0].last_error == "webhook: down"
    assert again[0].attempts == 2
    # "a" lost its hold: its late finish changes nothing
    assert not await store.finish_alert(claimed[0].id, "a", retry, {}, None, None)

    assert await store.finish_alert(
        claimed[0].id, "b", retry, {"email": T0, "webhook": retry}, None, None
    )
    done = {a.id: a for a in await store.list_alerts()}
    assert done[claimed[0].id].done_at == retry
    assert done[claimed[0].id].delivered == {"email": T0, "webhook": retry}
    assert done[claimed[1].id].done_at == T0
    assert await store.claim_alerts(10, LEASE, "c", retry + WEEK, T0 - WEEK) == []


async def test_an_expired_lease_lets_another_sender_claim(store: Store) -> None:
    await raise_alert(store, dead(1), T0)
    assert len(await store.claim_alerts(10, LEASE, "a", T0, T0 - WEEK)) == 1
    assert await store.claim_alerts(10, LEASE, "b", T0 + LEASE, T0 - WEEK) == []
    later = T0 + LEASE + timedelta(seconds=1)
    assert len(await store.claim_alerts(10, LEASE, "b", later, T0 - WEEK)) == 1


async def test_alerts_older_than_the_cutoff_are_not_claimed(store: Store) -> None:
    await raise_alert(store, dead(1), T0)
    late = T0 + WEEK + timedelta(seconds=1)
    assert await store.claim_alerts(10, LEASE, "a", late, late - WEEK) == []
    assert len(await store.list_alerts()) == 1
