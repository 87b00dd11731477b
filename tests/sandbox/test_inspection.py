from __future__ import annotations

import httpx
import pytest

from connector.sandbox import RunningSandbox
from tests.fixtures_sandbox import SandboxFactory


def test_state_for_one_contact_shows_addresses_tags_notes_tasks(
    sandbox: RunningSandbox, api: httpx.Client, inspect: httpx.Client
) -> None:
    cid = str(sandbox.state.contact_ids[0])
    tag_id = api.post("/tags", json={"name": "Bounced"}).json()["id"]
    api.post(f"/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [cid]})
    api.post(f"/contacts/{cid}/notes", json={"title": "n", "user_id": "1"})
    api.post("/tasks", json={"title": "t", "assigned_to_user_id": "1", "contact_id": cid})
    detail = inspect.get("/state", params={"contact_id": cid}).json()
    assert detail["contact"]["id"] == cid
    assert detail["contact"]["email_addresses"][0]["email_opt_status"]
    assert "Bounced" in detail["tags"]
    assert len(detail["notes"]) == 1
    assert len(detail["tasks"]) == 1


def test_full_state_of_a_small_account(sandbox: RunningSandbox, inspect: httpx.Client) -> None:
    state = inspect.get("/state").json()
    assert state["contact_count"] == len(state["contacts"]) == 50
    assert sum(state["statuses"].values()) == state["address_count"]
    assert {t["name"] for t in state["tags"]} >= {"Customer", "Lead", "Newsletter"}
    assert state["users"]


@pytest.mark.parametrize("sandbox", [{"contacts": 1500}], indirect=True)
def test_large_account_state_is_a_summary_unless_asked(inspect: httpx.Client) -> None:
    assert "contacts" not in inspect.get("/state").json()
    assert len(inspect.get("/state", params={"contacts": "all"}).json()["contacts"]) == 1500


def test_simulate_a_bounce_and_read_it_back(
    sandbox: RunningSandbox, api: httpx.Client, inspect: httpx.Client
) -> None:
    contact = sandbox.state.contacts[sandbox.state.contact_ids[0]]
    email = contact.emails[0][1]
    changed = inspect.post("/email-status", json={"email": email, "status": "HARD_BOUNCE"})
    assert changed.json()["status"] == "HARD_BOUNCE"
    detail = inspect.get("/state", params={"email": email}).json()
    assert detail["address"]["status"] == "HARD_BOUNCE"
    assert str(contact.id) in detail["contact_ids"]
    assert inspect.post("/email-status", json={"email": email, "status": "NOPE"}).status_code == 400


def test_add_a_contact_for_a_test(api: httpx.Client, inspect: httpx.Client) -> None:
    created = inspect.post(
        "/contacts",
        json={
            "given_name": "Test",
            "family_name": "Person",
            "email_addresses": [
                {"email": "one@example.com", "field": "EMAIL1"},
                {"email": "two@example.com", "field": "EMAIL2"},
            ],
        },
    )
    assert created.status_code == 201
    cid = created.json()["id"]
    found = api.get("/contacts", params={"filter": "email==two@example.com"}).json()["contacts"]
    assert [c["id"] for c in found] == [cid]


def test_credentials_and_unknown_endpoint(sandbox: RunningSandbox, inspect: httpx.Client) -> None:
    assert inspect.get("/credentials").json()["api_key"] == sandbox.api_key
    assert inspect.get("/nope").status_code == 404


def test_throttle_reset_refills(sandbox_factory: SandboxFactory) -> None:
    running = sandbox_factory(requests_per_second=0.1, burst=1.0)
    url, headers = f"{running.base_url}/rest/v2/users", {"X-Keap-API-Key": running.api_key}
    assert httpx.get(url, headers=headers).status_code == 200
    assert httpx.get(url, headers=headers).status_code == 429
    httpx.post(f"{running.root_url}/_sandbox/throttle/reset")
    assert httpx.get(url, headers=headers).status_code == 200
