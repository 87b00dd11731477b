from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from connector.sandbox import RunningSandbox
from tests.sandbox.conftest import all_pages


def status_url(email: str) -> str:
    return f"/emailAddresses/{quote(email, safe='@')}/status"


def address_with(sandbox: RunningSandbox, status: str) -> str:
    return next(a.email for a in sandbox.state.addresses.values() if a.status == status)


@pytest.mark.parametrize(
    ("before", "opted_in", "after"),
    [
        ("SINGLE_OPT_IN", False, "MANUAL"),
        ("HARD_BOUNCE", False, "HARD_BOUNCE"),
        ("BOUNCE", False, "BOUNCE"),
        ("MANUAL", True, "SINGLE_OPT_IN"),
        ("NON_MARKETABLE", True, "SINGLE_OPT_IN"),
        ("UNENGAGED_NON_MARKETABLE", True, "SINGLE_OPT_IN"),
        ("HARD_BOUNCE", True, "HARD_BOUNCE"),
        ("SPAM", True, "SPAM"),
        ("LIST_UNSUBSCRIBE", True, "LIST_UNSUBSCRIBE"),
    ],
)
def test_opt_status_changes_follow_keaps_rules(
    sandbox: RunningSandbox, api: httpx.Client, before: str, opted_in: bool, after: str
) -> None:
    email = "rules@example.com"
    sandbox.state.set_status(email, before)
    response = api.patch(status_url(email), json={"opted_in": opted_in, "reason": "test"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == after
    assert response.json()["opted_in"] is (after == "SINGLE_OPT_IN")
    assert api.get(status_url(email)).json()["status"] == after


def test_status_belongs_to_the_address_not_the_contact(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    email, owners = next(
        (e, ids) for e, ids in sandbox.state.email_contacts.items() if len(ids) > 1
    )
    sandbox.state.set_status(email, "SINGLE_OPT_IN")
    api.patch(status_url(email), json={"opted_in": False, "reason": "bounced"})
    for owner in owners:
        items = api.get(f"/contacts/{owner}", params={"fields": "email_addresses"}).json()
        statuses = {i["email"].lower(): i["email_opt_status"] for i in items["email_addresses"]}
        assert statuses[email] == "MANUAL"


def test_status_fields_and_unknown_address(sandbox: RunningSandbox, api: httpx.Client) -> None:
    email = address_with(sandbox, "HARD_BOUNCE")
    body = api.get(status_url(email)).json()
    assert set(body) >= {"email", "opted_in", "status", "create_time"}
    assert body["opted_in"] is False
    assert api.get(status_url("nobody@example.com")).status_code == 404


def test_opt_out_needs_a_reason(sandbox: RunningSandbox, api: httpx.Client) -> None:
    email = address_with(sandbox, "SINGLE_OPT_IN")
    assert api.patch(status_url(email), json={"opted_in": False}).status_code == 400


@pytest.mark.parametrize("sandbox", [{"contacts": 800, "bounced_fraction": 0.2}], indirect=True)
def test_listing_by_statuses_pages_every_match_once(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    wanted = {"HARD_BOUNCE", "BOUNCE"}
    pages = all_pages(
        api,
        "/emailAddresses",
        "email_addresses",
        filter="statuses==HARD_BOUNCE,BOUNCE",
        page_size=40,
    )
    emails = [item["email"] for page in pages for item in page]
    expected = {a.email for a in sandbox.state.addresses.values() if a.status in wanted}
    assert len(emails) == len(set(emails)) == len(expected)
    assert set(emails) == expected
    assert len(pages) > 1


def test_listing_by_emails_and_opted_in(sandbox: RunningSandbox, api: httpx.Client) -> None:
    bounced, fine = address_with(sandbox, "HARD_BOUNCE"), address_with(sandbox, "SINGLE_OPT_IN")
    body = api.get("/emailAddresses", params={"filter": f"emails=={bounced},{fine}"}).json()
    assert {i["email"] for i in body["email_addresses"]} == {bounced, fine}
    body = api.get(
        "/emailAddresses", params={"filter": "opted_in==false", "page_size": 1000}
    ).json()
    assert all(not i["opted_in"] for i in body["email_addresses"])


def test_listing_refuses_unknown_statuses(api: httpx.Client) -> None:
    response = api.get("/emailAddresses", params={"filter": "statuses==BOUNCED"})
    assert response.status_code == 400
