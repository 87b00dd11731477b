from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.bounces import BounceType
from connector.errors import CallbackError
from connector.metrics import Metrics
from connector.store import EventStatus, Store, open_store
from connector.webhook import MAX_BODY_BYTES, WebhookConfig, create_app, parse_callback

SECRET = "s3cret-webhook-key"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hook") as c:
        yield c


async def post(
    client: httpx.AsyncClient,
    path: str = "/keap/bounce/hard_bounce",
    body: str | bytes = "contactId=12&Email=Jane%40Example.com",
    key: str | None = SECRET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    url = path if key is None else f"{path}?key={quote(key)}"
    return await client.post(url, content=body, headers=headers if headers is not None else FORM)


async def test_form_callback_is_stored_and_acknowledged(
    client: httpx.AsyncClient, store: Store
) -> None:
    reply = await post(client)
    assert reply.status_code == 202
    body = reply.json()
    assert body["status"] == "queued"
    event = await store.get_event(body["event_id"])
    assert event is not None
    assert (event.contact_id, event.email, event.bounce_type) == (
        "12",
        "jane@example.com",
        "hard_bounce",
    )
    assert event.status is EventStatus.QUEUED
    assert event.raw == "contactId=12&Email=Jane%40Example.com", "kept exactly as sent"


@pytest.mark.parametrize("bounce_type", list(BounceType))
async def test_every_bounce_type_by_path_label_and_field(
    client: httpx.AsyncClient, store: Store, bounce_type: BounceType
) -> None:
    by_path = await post(client, f"/keap/bounce/{quote(bounce_type.label)}", "contactId=1")
    by_field = await post(
        client, "/keap/bounce", f"Contact0Id=2&bounceType={quote(bounce_type.value)}"
    )
    for reply in (by_path, by_field):
        assert reply.status_code == 202, reply.text
        event = await store.get_event(reply.json()["event_id"])
        assert event is not None
        assert event.bounce_type == bounce_type.value


async def test_json_body_and_header_key(client: httpx.AsyncClient, store: Store) -> None:
    reply = await post(
        client,
        "/keap/bounce",
        json.dumps(
            {"contact_id": 5, "email": "a@b.co", "bounce_type": "Mailbox Full", "count": "3"}
        ),
        key=None,
        headers={"content-type": "application/json; charset=utf-8", "x-connector-key": SECRET},
    )
    assert reply.status_code == 202, reply.text
    event = await store.get_event(reply.json()["event_id"])
    assert event is not None
    assert (event.contact_id, event.bounce_type, event.keap_count) == (
        "5",
        "soft_bounce_mailbox_full",
        3,
    )


@pytest.mark.parametrize("key", [None, "", "wrong", SECRET + "x", SECRET.upper()])
async def test_missing_or_wrong_key_is_401_and_stores_nothing(
    client: httpx.AsyncClient, store: Store, key: str | None
) -> None:
    reply = await post(client, key=key)
    assert reply.status_code == 401
    assert "key" in reply.json()["error"]
    assert (await store.queue_stats()).counts["queued"] == 0


async def test_duplicates_inside_the_window_count_once(
    client: httpx.AsyncClient, store: Store
) -> None:
    replies = [await post(client) for _ in range(5)]
    assert [r.json()["status"] for r in replies] == ["queued"] + ["duplicate"] * 4
    assert len({r.json()["event_id"] for r in replies}) == 1
    other_type = await post(client, "/keap/bounce/general_bounce")
    assert other_type.json()["status"] == "queued"
    assert (await store.queue_stats()).counts["queued"] == 2


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/keap/bounce/not_a_type", "contactId=1", "hard_bounce"),
        ("/keap/bounce", "contactId=1", "bounce type"),
        ("/keap/bounce/hard_bounce", "FirstName=Jane", "contactId"),
        ("/keap/bounce/hard_bounce", "contactId=~Contact.Id~", "merge field"),
        ("/keap/bounce/hard_bounce", "contactId=12abc", "not a Keap contact id"),
        ("/keap/bounce/hard_bounce", "contactId=1&count=many", "count"),
        ("/keap/bounce/hard_bounce", b"contactId=\xff\xfe", "UTF-8"),
    ],
)
async def test_bad_bodies_are_400_with_a_reason(
    client: httpx.AsyncClient, path: str, body: str | bytes, reason: str
) -> None:
    reply = await post(client, path, body)
    assert reply.status_code == 400
    assert reason in reply.json()["error"]


@pytest.mark.parametrize("body", ["[1, 2]", "{not json", '{"contactId": {"nested": 1}}'])
async def test_bad_json_is_400(client: httpx.AsyncClient, body: str) -> None:
    reply = await post(client, body=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400


async def test_other_content_types_are_415(client: httpx.AsyncClient) -> None:
    reply = await post(client, headers={"content-type": "text/xml"})
    assert reply.status_code == 415


async def test_missing_content_type_is_read_as_a_form(client: httpx.AsyncClient) -> None:
    reply = await post(client, headers={})
    assert reply.status_code == 202


async def test_oversized_body_is_413(client: httpx.AsyncClient, store: Store) -> None:
    big = "contactId=1&pad=" + "x" * MAX_BODY_BYTES
    assert (await post(client, body=big)).status_code == 413

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 8192

    reply = await client.post(
        f"/keap/bounce/hard_bounce?key={SECRET}", content=stream(), headers=FORM
    )
    assert reply.status_code == 413
    assert (await store.queue_stats()).counts["queued"] == 0


async def test_store_failure_is_503_so_keap_is_not_told_it_was_kept(
    client: httpx.AsyncClient, store: Store
) -> None:
    await store.close()
    reply = await post(client)
    assert reply.status_code == 503


async def test_https_required_behind_a_proxy(store: Store) -> None:
    app = create_app(
        WebhookConfig(SECRET, timedelta(minutes=10), require_https=True), store, Metrics()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        plain = await post(c)
        assert plain.status_code == 403
        proxied = await post(c, headers={**FORM, "x-forwarded-proto": "https"})
        assert proxied.status_code == 202


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    await post(client)
    await post(client)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json()["status"] == "ready"
    text = (await client.get("/metrics")).text
    assert 'connector_events_received_total{bounce_type="hard_bounce",status="queued"} 1.0' in text
    assert (
        'connector_events_received_total{bounce_type="hard_bounce",status="duplicate"} 1.0' in text
    )
    assert 'connector_queue_depth{status="queued"} 1.0' in text
    assert "connector_oldest_queued_age_seconds" in text


async def test_readyz_reports_missing_credentials(store: Store) -> None:
    async def ready() -> str:
        return "no Keap credentials: run `connector auth login`"

    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics(), ready=ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        reply = await c.get("/readyz")
    assert reply.status_code == 503
    assert "auth login" in reply.json()["problems"][0]


def test_parse_prefers_the_path_type_and_keeps_leading_zero_ids_canonical() -> None:
    parsed = parse_callback(
        "hard_bounce", None, b"Id=007&bounce_type=auto_reply&Email=~Contact.Email~"
    )
    assert parsed.bounce_type is BounceType.HARD_BOUNCE
    assert parsed.contact_id == "7"
    assert parsed.email is None


@given(
    path_type=st.one_of(st.none(), st.text(max_size=30)),
    content_type=st.one_of(
        st.none(), st.sampled_from(["application/json", "application/x-www-form-urlencoded"])
    ),
    body=st.one_of(
        st.binary(max_size=300),
        st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=6).map(
            lambda d: json.dumps(d).encode()
        ),
    ),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_parser_raises_only_callback_errors(
    path_type: str | None, content_type: str | None, body: bytes
) -> None:
    try:
        parsed = parse_callback(path_type, content_type, body)
    except CallbackError:
        return
    assert parsed.contact_id is not None or parsed.email is not None
    assert parsed.contact_id is None or parsed.contact_id.isdigit()
    stored = (parsed.raw, parsed.email or "", parsed.contact_id or "")
    assert not any("\x00" in value for value in stored), "no database text holds a NUL"


@pytest.mark.parametrize("count", ["%C2%B2", "%D9%A3", "-1", "1.5", "1234567890"])
def test_a_count_that_is_not_ascii_digits_is_a_400_reason(count: str) -> None:
    body = f"contactId=12&count={count}".encode()
    with pytest.raises(CallbackError, match="not a whole number"):
        parse_callback("hard_bounce", None, body)


def test_a_nul_in_the_body_or_in_an_address_is_refused() -> None:
    with pytest.raises(CallbackError, match="NUL"):
        parse_callback("hard_bounce", None, b"contactId=12&Email=a\x00b@example.com")
    with pytest.raises(CallbackError, match="not an email address"):
        parse_callback("hard_bounce", None, b"contactId=12&Email=a%00b%40example.com")


@pytest.mark.parametrize(
    "posted",
    ["<x@y.z>", "mailto:a@b.c", "a@", "@b.c", "a b@c.d", "a@b@c.d", "a@localhost", "x@[1.2.3.4"],
)
def test_a_posted_email_that_is_not_an_address_is_refused(posted: str) -> None:
    """DESIGN 1a: taken for "no address", it would let a destructive step pick one."""
    body = f"contactId=12&Email={quote(posted)}".encode()
    with pytest.raises(CallbackError, match="not an email address"):
        parse_callback("hard_bounce", None, body)


@pytest.mark.parametrize(
    ("posted", "kept"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("straße@d.example", "straße@d.example"),
        ("jo@münchen.de", "jo@münchen.de"),
        ("~Contact.Email~", None),
        ("", None),
    ],
)
def test_a_posted_address_is_kept_lower_cased(posted: str, kept: str | None) -> None:
    parsed = parse_callback("hard_bounce", None, f"contactId=12&Email={quote(posted)}".encode())
    assert parsed.email == kept


async def test_an_invalid_email_is_a_400_and_nothing_is_stored(
    client: httpx.AsyncClient, store: Store
) -> None:
    reply = await post(client, body="contactId=12&Email=mailto%3Aa%40b.c")
    assert reply.status_code == 400
    assert "not an email address" in reply.json()["error"]
    assert await store.list_events() == []


@given(
    path=st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=30),
    key=st.one_of(st.none(), st.just(SECRET), st.text(max_size=20)),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
            "multipart/form-data",
        ]
    ),
    body=st.binary(max_size=500),
)
@example(  # a NUL inside an address: SQLite keeps it, PostgreSQL text cannot hold it
    path="hard_bounce",
    key=SECRET,
    content_type="application/x-www-form-urlencoded",
    body=b"contactId=12&Email=a%00b%40example.com",
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_no_input_gives_a_5xx_or_stores_without_the_key(
    database_url: str, path: str, key: str | None, content_type: str, body: bytes
) -> None:
    store = await open_store(database_url, migrate=True)
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, Metrics())
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://h"
        ) as c:
            before = (await store.queue_stats()).counts["queued"]
            url = "/keap/bounce/" + quote(path) + ("" if key is None else f"?key={quote(key)}")
            reply = await c.post(url, content=body, headers={"content-type": content_type})
            after = (await store.queue_stats()).counts["queued"]
    finally:
        await store.close()
    assert reply.status_code < 500
    if key != SECRET:
        assert reply.status_code in (401, 404, 405)
        assert after == before
