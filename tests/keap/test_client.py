"""KeapClient against respx; the ``keap`` fixture checks every request against Keap's spec."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connector.config import Settings
from connector.errors import (
    ConnectorError,
    KeapForbiddenError,
    KeapNotFoundError,
    KeapRequestError,
    KeapThrottledError,
    KeapUnauthorizedError,
    KeapUnavailableError,
    OutcomeUnknownError,
    PagingStalledError,
)
from connector.keap.client import KeapClient
from connector.keap.models import EmailStatus
from connector.keap.retry import RateLimiter
from tests.keap.fakes import API_KEY, FakeClock

CONTACT = {
    "id": 101,
    "given_name": "Jane",
    "family_name": "Doe",
    "email_addresses": [
        {"email": "jane@example.com", "field": "EMAIL1", "email_opt_status": "HARD_BOUNCE"},
        {"email": "j2@example.org", "field": "EMAIL2", "email_opt_status": "BRAND_NEW_STATUS"},
    ],
    "tag_ids": ["5"],
    "update_time": "2026-02-01T10:00:00.000Z",
    "surprise": {"nested": True},
}
STATUS = {
    "email": "jane@example.com",
    "opted_in": False,
    "status": "HARD_BOUNCE",
    "create_time": "2025-01-01T00:00:00Z",
}


def body_of(call: Any) -> Any:
    return json.loads(call.request.content)


def params_of(call: Any) -> dict[str, str]:
    return dict(call.request.url.params)


# --- contacts -------------------------------------------------------------------------------


async def test_get_contact_asks_for_email_addresses_and_keeps_unknown_status(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.get("/contacts/101").respond(200, json=CONTACT)

    contact = await client.get_contact("101")

    fields = params_of(route.calls.last)["fields"].split(",")
    assert "email_addresses" in fields
    assert "given_name" in fields
    assert route.calls.last.request.headers["X-Keap-API-Key"] == API_KEY
    assert contact.id == "101"
    assert contact.email_addresses[0].email_opt_status == EmailStatus.HARD_BOUNCE
    assert contact.email_addresses[1].email_opt_status == "BRAND_NEW_STATUS"
    assert contact.update_time == datetime(2026, 2, 1, 10, tzinfo=UTC)


async def test_iter_contacts_pages_to_the_end_exposing_tokens(
    keap: respx.MockRouter, client: KeapClient, caplog: pytest.LogCaptureFixture
) -> None:
    pages = {
        None: {"contacts": [{"id": "1"}, {"id": "2"}], "next_page_token": "t2"},
        "t2": {"contacts": [{"id": "3"}], "next_page_token": "t3"},
        "t3": {"contacts": [], "next_page_token": ""},
    }
    route = keap.get("/contacts").mock(
        side_effect=lambda r: httpx.Response(200, json=pages[r.url.params.get("page_token")])
    )

    seen = [
        page
        async for page in client.iter_contacts(
            page_size=2, filter="start_update_time==2026-01-01T00:00:00.000Z", order_by="id asc"
        )
    ]

    assert [[c.id for c in p.items] for p in seen] == [["1", "2"], ["3"], []]
    assert [(p.page_token, p.next_page_token) for p in seen] == [
        (None, "t2"),
        ("t2", "t3"),
        ("t3", None),
    ]
    assert seen[-1].is_last
    assert route.call_count == 3
    assert "repeated" not in caplog.text
    first = route.calls[0].request
    assert b"filter=start_update_time%3D%3D2026-01-01T00%3A00%3A00.000Z" in first.url.raw_path
    assert params_of(route.calls[0])["page_size"] == "2"


async def test_iter_contacts_fails_on_a_repeated_page_token(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    answers = {
        None: {"contacts": [{"id": "1"}], "next_page_token": "A"},
        "A": {"contacts": [{"id": "2"}], "next_page_token": "B"},
        "B": {"contacts": [{"id": "3"}], "next_page_token": "A"},
    }
    route = keap.get("/contacts").mock(
        side_effect=lambda r: httpx.Response(200, json=answers[r.url.params.get("page_token")])
    )
    seen: list[Any] = []

    async def read() -> None:
        async for page in client.iter_contacts():
            seen.append(page)

    with pytest.raises(PagingStalledError, match="page token 'A' twice"):
        await read()

    assert route.call_count == 3
    assert [c.id for p in seen for c in p.items] == ["1", "2"]


async def test_iter_contacts_resumes_from_a_checkpointed_token(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.get("/contacts").respond(200, json={"contacts": [{"id": "9"}]})

    seen = [page async for page in client.iter_contacts(start_page_token="saved")]

    assert params_of(route.calls.last)["page_token"] == "saved"
    assert seen[0].page_token == "saved"
    assert seen[0].is_last


async def test_page_size_outside_keap_limits_is_refused_before_sending(
    client: KeapClient,
) -> None:
    with pytest.raises(ValueError, match="page_size"):
        await anext(client.iter_contacts(page_size=1001))


async def test_find_contacts_by_email_keeps_exact_matches_only(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    other = {"id": "7", "email_addresses": [{"email": "jane@example.com.au", "field": "EMAIL1"}]}
    route = keap.get("/contacts").respond(200, json={"contacts": [CONTACT, other]})

    found = await client.find_contacts_by_email("Jane@Example.com")

    assert [c.id for c in found] == ["101"]
    assert params_of(route.calls.last)["filter"] == "email==Jane@Example.com"


async def test_replace_email_addresses_sends_the_survivors_with_update_mask(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.patch("/contacts/101").respond(200, json={**CONTACT, "email_addresses": []})

    await client.replace_email_addresses("101", [("keep@example.com", "EMAIL1")])

    assert params_of(route.calls.last)["update_mask"] == "email_addresses"
    assert body_of(route.calls.last) == {
        "email_addresses": [{"email": "keep@example.com", "field": "EMAIL1"}]
    }


async def test_replace_email_addresses_with_nothing_left_sends_an_empty_list(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.patch("/contacts/101").respond(200, json={"id": "101"})

    await client.replace_email_addresses("101", [])

    assert body_of(route.calls.last) == {"email_addresses": []}


@pytest.mark.parametrize(
    "keep", [[("a@x.com", "EMAIL1"), ("b@x.com", "EMAIL1")], [("a@x.com", "EMAIL9")]]
)
async def test_replace_email_addresses_refuses_ambiguous_fields(
    client: KeapClient, keep: list[tuple[str, str]]
) -> None:
    with pytest.raises(ValueError, match="distinct fields"):
        await client.replace_email_addresses("101", keep)


# --- email status ---------------------------------------------------------------------------


async def test_iter_email_statuses_filters_on_statuses(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.get("/emailAddresses").respond(
        200, json={"email_addresses": [STATUS, {**STATUS, "status": "NEW_ONE"}]}
    )

    pages = [p async for p in client.iter_email_statuses(statuses=["HARD_BOUNCE", "BOUNCE"])]

    assert params_of(route.calls.last)["filter"] == "statuses==HARD_BOUNCE,BOUNCE"
    assert [s.status for s in pages[0].items] == ["HARD_BOUNCE", "NEW_ONE"]
    assert pages[0].items[1].known_status is None


async def test_iter_email_statuses_combines_filters(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.get("/emailAddresses").respond(200, json={})

    _ = [p async for p in client.iter_email_statuses(statuses=["BOUNCE"], opted_in=False)]

    assert params_of(route.calls.last)["filter"] == "statuses==BOUNCE;opted_in==false"


@pytest.mark.parametrize(
    ("email", "encoded"),
    [("jane@example.com", "jane%40example.com"), ("a+b/c@x.io", "a%2Bb%2Fc%40x.io")],
)
async def test_get_email_status_url_encodes_the_address(
    keap: respx.MockRouter, client: KeapClient, email: str, encoded: str
) -> None:
    route = keap.get(url__regex=r"/emailAddresses/.+/status$").respond(200, json=STATUS)

    status = await client.get_email_status(email)

    raw = route.calls.last.request.url.raw_path.decode()
    assert raw.endswith(f"/emailAddresses/{encoded}/status")
    assert status.known_status is EmailStatus.HARD_BOUNCE
    assert status.opted_in is False


async def test_set_email_opt_status_sends_opted_in_and_reason(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.patch("/emailAddresses/jane%40example.com/status").respond(200, json=STATUS)

    result = await client.set_email_opt_status("jane@example.com", opted_in=False, reason="Bounced")

    assert body_of(route.calls.last) == {"opted_in": False, "reason": "Bounced"}
    assert result.status == "HARD_BOUNCE"


async def test_set_email_opt_status_needs_a_reason(client: KeapClient) -> None:
    with pytest.raises(ValueError, match="reason"):
        await client.set_email_opt_status("jane@example.com", opted_in=False, reason=" ")


# --- tags -----------------------------------------------------------------------------------


async def test_find_or_create_tag_finds_by_exact_name_and_caches(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    tags = [{"id": 8, "name": "Hard Bounce 2"}, {"id": 9, "name": "Hard Bounce"}]
    route = keap.get("/tags").respond(200, json={"tags": tags})

    first = await client.find_or_create_tag("Hard Bounce")
    again = await client.find_or_create_tag("Hard Bounce")

    assert first.id == "9"
    assert again is first
    assert route.call_count == 1
    assert b"filter=name%3D%3DHard%20Bounce" in route.calls.last.request.url.raw_path


async def test_find_or_create_tag_creates_the_category_and_the_tag(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    keap.get("/tags/categories").respond(200, json={"tag_categories": []})
    make_category = keap.post("/tags/categories").respond(201, json={"id": 3, "name": "Bounces"})
    keap.get("/tags").respond(200, json={"tags": []})
    make_tag = keap.post("/tags").respond(
        201, json={"id": 77, "name": "First Hard Bounce", "category": {"id": "3"}}
    )

    tag = await client.find_or_create_tag("First Hard Bounce", category_name="Bounces")

    assert tag.id == "77"
    assert tag.category_id == "3"
    assert body_of(make_category.calls.last) == {"name": "Bounces"}
    assert body_of(make_tag.calls.last) == {"name": "First Hard Bounce", "category": {"id": "3"}}


async def test_find_or_create_tag_settles_an_unknown_create_by_looking_again(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    keap.get("/tags").mock(
        side_effect=[
            httpx.Response(200, json={"tags": []}),
            httpx.Response(200, json={"tags": [{"id": 5, "name": "Third Strike"}]}),
        ]
    )
    create = keap.post("/tags").mock(side_effect=httpx.ReadTimeout("lost"))

    tag = await client.find_or_create_tag("Third Strike")

    assert tag.id == "5"
    assert create.call_count == 1


async def test_find_or_create_tag_takes_the_tag_another_replica_just_created(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    keap.get("/tags").mock(
        side_effect=[
            httpx.Response(200, json={"tags": []}),
            httpx.Response(200, json={"tags": [{"id": 6, "name": "Third Strike"}]}),
        ]
    )
    conflict = {"code": 409, "message": "Tag already exists", "status": "ALREADY_EXISTS"}
    create = keap.post("/tags").respond(409, json=conflict)

    tag = await client.find_or_create_tag("Third Strike")

    assert tag.id == "6"
    assert create.call_count == 1, "a 409 is settled by looking up, not by creating again"


async def test_find_or_create_tag_409_without_a_tag_to_find_is_an_error(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    keap.get("/tags").respond(200, json={"tags": []})
    keap.post("/tags").respond(409, json={"code": 409, "message": "conflict"})

    with pytest.raises(KeapRequestError):
        await client.find_or_create_tag("Third Strike")


async def test_apply_tag_batches_unique_ids_by_100(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.post("/tags/9/contacts:applyTags").mock(
        side_effect=lambda r: httpx.Response(
            200, json={"results": {i: "SUCCESS" for i in json.loads(r.content)["contact_ids"]}}
        )
    )
    ids = [str(i) for i in range(250)] + ["3", "7"]

    results = await client.apply_tag("9", ids)

    sizes = [len(body_of(c)["contact_ids"]) for c in route.calls]
    assert sizes == [100, 100, 50]
    assert len(results) == 250
    assert results["249"] == "SUCCESS"


async def test_apply_tag_with_no_contacts_sends_nothing(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.post("/tags/9/contacts:applyTags").respond(200, json={})

    assert await client.apply_tag("9", []) == {}
    assert route.call_count == 0


async def test_remove_tag_batches_by_100(keap: respx.MockRouter, client: KeapClient) -> None:
    route = keap.post("/tags/9/contacts:removeTags").respond(204)

    await client.remove_tag("9", [str(i) for i in range(101)])

    assert [len(body_of(c)["contact_ids"]) for c in route.calls] == [100, 1]


# --- notes, tasks, users --------------------------------------------------------------------


async def test_create_note_writes_as_the_configured_user(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.post("/contacts/101/notes").respond(
        201, json={"id": 555, "contact_id": 101, "title": "Bounce remediation"}
    )

    note = await client.create_note("101", title="Bounce remediation", text="Opted out.")

    assert body_of(route.calls.last) == {
        "title": "Bounce remediation",
        "text": "Opted out.",
        "user_id": "42",
    }
    assert note.id == "555"
    assert note.contact_id == "101"


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("lost"), httpx.RemoteProtocolError("reset"), httpx.Response(503)],
)
async def test_create_note_is_never_resent_when_the_outcome_is_unknown(
    keap: respx.MockRouter, client: KeapClient, failure: Any
) -> None:
    route = keap.post("/contacts/101/notes").mock(side_effect=[failure])

    with pytest.raises(OutcomeUnknownError) as caught:
        await client.create_note("101", title="t", text="x")

    assert route.call_count == 1
    assert caught.value.keap is not None
    assert caught.value.keap.method == "POST"


async def test_create_note_is_retried_when_the_request_never_left(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.post("/contacts/101/notes").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(201, json={"id": "1"})]
    )

    note = await client.create_note("101", title="t", text="x")

    assert note.id == "1"
    assert route.call_count == 2


async def test_create_note_after_429_is_retried(keap: respx.MockRouter, client: KeapClient) -> None:
    route = keap.post("/contacts/101/notes").mock(
        side_effect=[httpx.Response(429), httpx.Response(201, json={"id": "1"})]
    )

    await client.create_note("101", title="t", text="x")

    assert route.call_count == 2


async def test_list_notes_reads_every_page(keap: respx.MockRouter, client: KeapClient) -> None:
    keap.get("/contacts/101/notes").mock(
        side_effect=[
            httpx.Response(200, json={"notes": [{"id": "1"}], "next_page_token": "n2"}),
            httpx.Response(200, json={"notes": [{"id": "2", "title": "Bounce"}]}),
        ]
    )

    notes = await client.list_notes("101")

    assert [n.id for n in notes] == ["1", "2"]


async def test_create_task_assigns_and_formats_due_time(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.post("/tasks").respond(201, json={"id": 12, "title": "Find a new address"})

    task = await client.create_task(
        "101",
        title="Find a new address",
        description="EMAIL1 hard bounced",
        due_time=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        priority="ESSENTIAL",
    )

    assert body_of(route.calls.last) == {
        "title": "Find a new address",
        "contact_id": "101",
        "assigned_to_user_id": "42",
        "description": "EMAIL1 hard bounced",
        "priority": "ESSENTIAL",
        "due_time": "2026-03-02T09:30:00.000Z",
    }
    assert task.id == "12"


async def test_create_task_is_never_resent_after_a_timeout(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.post("/tasks").mock(side_effect=httpx.ReadTimeout("lost"))

    with pytest.raises(OutcomeUnknownError):
        await client.create_task("101", title="t")

    assert route.call_count == 1


async def test_resolve_user_id_maps_userinfo_to_the_apps_user_once(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient]
) -> None:
    client = make_client(Settings(keap_api_key=API_KEY))
    userinfo = keap.get("/oauth/connect/userinfo").respond(
        200, json={"id": "900003", "sub": "3", "email": "me@example.com"}
    )
    users = keap.get("/users").respond(
        200,
        json={
            "users": [
                {"id": 1, "global_user_id": "900001", "status": "ACTIVE", "admin": True},
                {"id": 3, "global_user_id": "900003", "status": "ACTIVE", "admin": False},
            ]
        },
    )
    notes = keap.post("/contacts/1/notes").respond(201, json={"id": "1"})

    await client.create_note("1", title="a", text="b")
    await client.create_note("1", title="a", text="c")

    assert (userinfo.call_count, users.call_count) == (1, 1)
    assert [body_of(c)["user_id"] for c in notes.calls] == ["3", "3"]


async def test_resolve_user_id_uses_sub_when_users_cannot_be_listed(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient]
) -> None:
    client = make_client(Settings(keap_api_key=API_KEY))
    keap.get("/oauth/connect/userinfo").respond(200, json={"id": "900007", "sub": "7"})
    keap.get("/users").respond(403, json={"code": 403, "message": "admins only"})

    assert await client.resolve_user_id() == "7"


async def test_resolve_user_id_falls_back_to_an_active_admin(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient]
) -> None:
    client = make_client(Settings(keap_api_key=API_KEY))
    keap.get("/oauth/connect/userinfo").respond(404, json={"code": 404, "message": "n/a"})
    users = keap.get("/users").respond(
        200,
        json={
            "users": [
                {"id": 1, "status": "INACTIVE", "admin": True},
                {"id": 2, "status": "ACTIVE", "admin": False},
                {"id": 3, "status": "ACTIVE", "admin": True},
            ]
        },
    )

    assert await client.resolve_user_id() == "3"
    assert params_of(users.calls.last)["page_size"] == "100"


# --- failures, retries, pacing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, KeapRequestError),
        (404, KeapNotFoundError),
        (403, KeapForbiddenError),
        (409, KeapRequestError),
        (401, KeapUnauthorizedError),
    ],
)
async def test_client_errors_are_mapped_and_never_retried(
    keap: respx.MockRouter, client: KeapClient, status: int, error: type[ConnectorError]
) -> None:
    route = keap.get("/contacts/101").respond(
        status, json={"code": status, "message": "nope"}, headers={"x-request-id": "rid-1"}
    )

    with pytest.raises(error) as caught:
        await client.get_contact("101")

    assert route.call_count == 1
    assert client.stats.retries == 0
    info = caught.value.keap
    assert info is not None
    assert (info.status, info.request_id, info.method) == (status, "rid-1", "GET")
    assert info.path == "/rest/v2/contacts/101"
    assert "nope" in str(caught.value)


async def test_error_body_is_truncated(keap: respx.MockRouter, client: KeapClient) -> None:
    keap.get("/contacts/101").respond(400, text="x" * 5000)

    with pytest.raises(KeapRequestError) as caught:
        await client.get_contact("101")

    assert caught.value.keap is not None
    assert len(caught.value.keap.body) <= 300


async def test_429_is_retried_and_counted(
    keap: respx.MockRouter, client: KeapClient, clock: FakeClock
) -> None:
    route = keap.get("/contacts/101").mock(
        side_effect=[httpx.Response(429, json={"code": 429}), httpx.Response(200, json=CONTACT)]
    )

    await client.get_contact("101")

    assert route.call_count == 2
    assert (client.stats.calls, client.stats.retries, client.stats.throttled) == (2, 1, 1)
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 0.5


async def test_retry_after_is_honoured(
    keap: respx.MockRouter, client: KeapClient, clock: FakeClock
) -> None:
    keap.get("/contacts/101").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(200, json=CONTACT),
        ]
    )

    await client.get_contact("101")

    assert clock.sleeps[0] == 7.0
    assert sum(clock.sleeps[1:]) < 0.01, "after Keap's pause, at most one slot of pacing"


async def test_retry_after_beyond_the_time_budget_gives_up_at_once(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient]
) -> None:
    client = make_client(max_seconds=30.0)
    route = keap.get("/contacts/101").respond(429, headers={"Retry-After": "120"})

    with pytest.raises(KeapThrottledError) as caught:
        await client.get_contact("101")

    assert route.call_count == 1
    assert caught.value.retry_after == 120.0


async def test_503_is_retried_up_to_the_attempt_bound(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient], clock: FakeClock
) -> None:
    client = make_client(max_attempts=3)
    route = keap.get("/contacts/101").respond(503, text="<html>gateway</html>")

    with pytest.raises(KeapUnavailableError):
        await client.get_contact("101")

    assert route.call_count == 3
    assert len(clock.sleeps) == 2
    assert client.stats.retries == 2


async def test_timeout_on_a_read_is_retried(keap: respx.MockRouter, client: KeapClient) -> None:
    route = keap.get("/contacts/101").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=CONTACT)]
    )

    contact = await client.get_contact("101")

    assert contact.id == "101"
    assert route.call_count == 2


async def test_idempotent_writes_are_retried_after_a_timeout(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.patch("/emailAddresses/jane%40example.com/status").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=STATUS)]
    )

    await client.set_email_opt_status("jane@example.com", opted_in=False, reason="Bounce")

    assert route.call_count == 2


async def test_unparseable_answer_is_a_retryable_failure(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient]
) -> None:
    client = make_client(max_attempts=2)
    route = keap.get("/contacts/101").respond(200, text="<html>oops</html>")

    with pytest.raises(KeapUnavailableError):
        await client.get_contact("101")

    assert route.call_count == 1


async def test_throttle_headers_slow_the_limiter(
    keap: respx.MockRouter, make_client: Callable[..., KeapClient], clock: FakeClock
) -> None:
    limiter = RateLimiter(10.0, clock=clock.now, sleep=clock.sleep)
    client = make_client(limiter=limiter)
    keap.get("/contacts/101").respond(
        200,
        json=CONTACT,
        headers={
            "x-keap-product-throttle-available": "30",
            "x-keap-product-throttle-limit": "1500",
        },
    )

    await client.get_contact("101")

    assert limiter.effective_rate == pytest.approx(1.0)


async def test_api_key_never_leaks_into_repr_errors_or_logs(
    keap: respx.MockRouter, client: KeapClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keap.get("/contacts/101").respond(400, text=f"bad key {API_KEY} for jane@example.com")
    keap.get("/contacts/102").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=CONTACT)]
    )

    with pytest.raises(KeapRequestError) as caught:
        await client.get_contact("101")
    await client.get_contact("102")

    texts = [repr(client), str(caught.value), repr(caught.value), caplog.text]
    assert all(API_KEY not in text for text in texts)
    assert "jane@example.com" not in str(caught.value)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/contacts?page_size=5000", None),
        ("GET", "/contacts?page_tokn=abc", None),
        ("PATCH", "/emailAddresses/a%40b.com/status", {"opted_in": False}),
        ("POST", "/tags/1/contacts:applyTags", {"contact_ids": ["1", "1"]}),
        ("DELETE", "/contacts/1/notes", None),
    ],
)
def test_the_spec_guard_rejects_what_keap_would(method: str, url: str, body: Any) -> None:
    from tests.keap.conftest import BASE
    from tests.keap.spec_guard import request_problems

    request = httpx.Request(method, BASE + url, json=body)

    assert request_problems(request) != []


async def test_list_tasks_filters_on_the_contact(
    keap: respx.MockRouter, client: KeapClient
) -> None:
    route = keap.get("/tasks").respond(
        200, json={"tasks": [{"id": "4", "description": "marker-1", "contact_id": 101}]}
    )

    tasks = await client.list_tasks("101")

    assert [t.description for t in tasks] == ["marker-1"]
    assert params_of(route.calls.last)["filter"] == "contact_id==101"
