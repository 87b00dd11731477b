"""Issue 13 items 9 and 13: Keap data the connector must take in its stride.

Against the in-process sandbox, through the worker: an address Keap sends as ``"email": null``,
addresses with ``/ ? # %`` in the local part (legal there, and percent-encoded in the path of
``/emailAddresses/{email}/status`` as the spec's simple-style path parameter requires), and a
tag deleted in Keap after the connector cached its id.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.sandbox import api_contacts
from connector.store import EventStatus
from tests.fixtures_pipeline import Harness

NULL_MARK = "null-in-keap@example.com"


async def _done(harness: Harness, event_id: int) -> None:
    stored = await harness.store.get_event(event_id)
    assert stored is not None
    assert stored.status is EventStatus.DONE, stored.last_error


async def test_item9_an_address_keap_sends_as_null_is_read_as_empty(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = api_contacts._email_json

    def with_null(state: Any, field: str, email: str) -> dict[str, Any]:
        item = real(state, field, email)
        if email == NULL_MARK:
            item["email"] = None
        return item

    monkeypatch.setattr(api_contacts, "_email_json", with_null)
    cid = harness.contact("ada@example.com", NULL_MARK)
    event_id = await harness.event(cid, "unsubscribe_request", "ada@example.com")
    await harness.worker().drain()
    await _done(harness, event_id)
    assert harness.status("ada@example.com") == "MANUAL"


@pytest.mark.parametrize(
    "address", ["a/b@example.com", "who?@example.com", "x#y@example.com", "100%25@example.com"]
)
async def test_item9_reserved_characters_in_the_local_part_reach_the_right_address(
    harness: Harness, address: str
) -> None:
    cid = harness.contact(address)
    event_id = await harness.event(cid, "unsubscribe_request", address)
    await harness.worker().drain()
    await _done(harness, event_id)
    assert harness.status(address) == "MANUAL"
    assert harness.sandbox.stats()["spec_violations"] == 0


async def test_item13_a_tag_deleted_in_keap_is_found_again_not_dead(harness: Harness) -> None:
    state = harness.sandbox.state
    first = harness.contact("one@example.com")
    worker = harness.worker()
    await harness.event(first, "hard_bounce", "one@example.com")
    await worker.drain()
    [tag_id] = state.tag_ids_of(first)
    deleted = state.tags[tag_id].name
    with state.lock:
        del state.tags[tag_id]  # deleted in Keap's web app; the worker still caches the id

    second = harness.contact("two@example.com")
    event_id = await harness.event(second, "hard_bounce", "two@example.com")
    await worker.drain()
    await _done(harness, event_id)
    assert harness.tags_of(second) == {deleted}, "the tag was made again and applied"
    assert [t.name for t in state.tags.values()].count(deleted) == 1
