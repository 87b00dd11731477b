"""Issue 13, item 3: values no parser should choke on are a 400 with a reason, never a 5xx.

A JSON number of 5,000 digits (Python's int limit) and a lone surrogate in a JSON string (which
no database, log or response can encode) both used to be a 500. Every value of that kind is
refused once, at the parsing boundary, and counted in ``connector_callbacks_rejected``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from connector.metrics import Metrics
from connector.store import Store
from connector.webhook import WebhookConfig, create_app

SECRET = "hostile-values-key-0123"
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}

HOSTILE_JSON = {
    "5000-digit integer": '{"contactId": ' + "9" * 5000 + "}",
    "5000-digit count": '{"contactId": 12, "count": ' + "1" * 5000 + "}",
    "huge float": '{"contactId": 12, "count": 1e999}',
    "long float": '{"contactId": 1' + "0" * 4000 + ".5}",
    "NaN": '{"contactId": 12, "count": NaN}',
    "Infinity": '{"contactId": 12, "x": -Infinity}',
    "lone surrogate in an email": '{"contactId": 12, "Email": "a\\ud800@example.com"}',
    "lone surrogate in an unused field": '{"contactId": 12, "note": "\\udfff"}',
    "lone surrogate as a key": '{"contactId": 12, "\\ud800": "x"}',
    "lone surrogate as the bounce type": '{"contactId": 12, "bounce_type": "\\ud800"}',
    "deeply nested": '{"contactId": 12, "x": ' + "[" * 20000 + "]" * 20000 + "}",
    "deeply nested object": "[" * 50000,
}


@pytest.fixture
async def hook(store: Store) -> AsyncIterator[tuple[httpx.AsyncClient, Metrics]]:
    metrics = Metrics()
    app = create_app(WebhookConfig(SECRET, timedelta(minutes=10)), store, metrics)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hook") as client:
        yield client, metrics


def rejected(metrics: Metrics, code: str) -> float:
    value = metrics.registry.get_sample_value("connector_callbacks_rejected_total", {"code": code})
    return value or 0.0


@pytest.mark.parametrize("body", list(HOSTILE_JSON.values()), ids=list(HOSTILE_JSON))
async def test_issue13_item3_hostile_json_values_are_a_400_and_counted(
    hook: tuple[httpx.AsyncClient, Metrics], store: Store, body: str
) -> None:
    client, metrics = hook
    path = "/keap/bounce" if "bounce_type" in body else "/keap/bounce/hard_bounce"
    reply = await client.post(f"{path}?key={SECRET}", content=body, headers=JSON)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"], "a reason"
    assert rejected(metrics, "400") == 1
    assert await store.list_events() == []


async def test_issue13_item3_a_long_number_in_a_field_nobody_reads_is_kept_verbatim(
    hook: tuple[httpx.AsyncClient, Metrics], store: Store
) -> None:
    """Valid JSON: the literal is never converted, so it cannot overflow; the body is kept."""
    client, _ = hook
    body = '{"contactId": 12, "x": ' + "7" * 5000 + "}"
    reply = await client.post(f"/keap/bounce/hard_bounce?key={SECRET}", content=body, headers=JSON)
    assert reply.status_code == 202, reply.text
    (event,) = await store.list_events()
    assert event.raw == body


@pytest.mark.parametrize(
    "body",
    [
        "contactId=12&Email=a%ED%A0%80%40example.com",  # a surrogate, percent-encoded
        "contactId=12&%ED%A0%80=x",  # as a field name
        "contactId=12&bounce_type=%ED%B0%80",
        "contactId=12&count=" + "9" * 5000,
    ],
)
async def test_issue13_item3_hostile_form_values_are_never_a_5xx(
    hook: tuple[httpx.AsyncClient, Metrics], body: str
) -> None:
    client, metrics = hook
    reply = await client.post(f"/keap/bounce/hard_bounce?key={SECRET}", content=body, headers=FORM)
    assert reply.status_code in (202, 400), reply.text
    if reply.status_code == 400:
        assert reply.json()["error"]
        assert rejected(metrics, "400") == 1
