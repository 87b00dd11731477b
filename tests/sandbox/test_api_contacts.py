from __future__ import annotations

import httpx
import pytest

from connector.sandbox import RunningSandbox
from connector.sandbox.messages import iso_ms
from tests.sandbox.conftest import ALL_CONTACT_FIELDS, all_pages

BIG = {"contacts": 1200, "requests_per_second": 1000.0}


@pytest.mark.parametrize("sandbox", [BIG], indirect=True)
@pytest.mark.parametrize("order_by", ["id", "id desc", "update_time", "email desc"])
def test_paging_covers_every_contact_exactly_once(
    sandbox: RunningSandbox, api: httpx.Client, order_by: str
) -> None:
    pages = all_pages(api, "/contacts", "contacts", page_size=250, order_by=order_by)
    ids = [c["id"] for page in pages for c in page]
    assert len(ids) == len(set(ids)) == 1200
    assert set(ids) == {str(i) for i in sandbox.state.contact_ids}
    assert len(pages) == 5


@pytest.mark.parametrize("sandbox", [BIG], indirect=True)
def test_paging_stays_exact_while_contacts_change(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    seen: list[str] = []
    token = ""
    while True:
        params: dict[str, str | int] = {"page_size": 100, "order_by": "update_time"}
        if token:
            params["page_token"] = token
        body = api.get("/contacts", params=params).json()
        seen += [c["id"] for c in body["contacts"]]
        if len(seen) == 100:
            first = sandbox.state.contacts[int(seen[0])]
            api.patch(
                f"/contacts/{first.id}",
                params={"update_mask": "email_addresses"},
                json={"email_addresses": [{"email": "moved@example.com", "field": "EMAIL1"}]},
            )
        token = body["next_page_token"]
        if not token:
            break
    assert len(seen) - len(set(seen)) == 1  # only the contact moved to the end shows again
    assert set(seen) == {str(i) for i in sandbox.state.contact_ids}


def test_default_fields_leave_out_email_addresses(api: httpx.Client) -> None:
    contact = api.get("/contacts", params={"page_size": 1}).json()["contacts"][0]
    assert set(contact) == {"id", "given_name", "family_name"}


def test_get_honours_fields_and_carries_address_status(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    cid = sandbox.state.contact_ids[0]
    body = api.get(f"/contacts/{cid}", params={"fields": "email_addresses"}).json()
    assert set(body) == {"id", "email_addresses"}
    item = body["email_addresses"][0]
    assert set(item) >= {"email", "field", "email_opt_status", "is_opt_in"}
    address = sandbox.state.address(item["email"])
    assert address is not None
    assert item["email_opt_status"] == address.status


def test_unknown_contact_is_404(api: httpx.Client) -> None:
    response = api.get("/contacts/1")
    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_filter_by_email_finds_every_contact_sharing_it(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    email, owners = next(
        (e, ids) for e, ids in sandbox.state.email_contacts.items() if len(ids) > 1
    )
    body = api.get("/contacts", params={"filter": f"email=={email.upper()}"}).json()
    assert sorted(int(c["id"]) for c in body["contacts"]) == sorted(owners)


def test_filter_by_update_window_and_ids(sandbox: RunningSandbox, api: httpx.Client) -> None:
    contacts = sorted(sandbox.state.contacts.values(), key=lambda c: c.update_ms)
    middle = contacts[len(contacts) // 2]
    start = middle.update_ms - middle.update_ms % 1000
    window = f"start_update_time=={iso_ms(start)}"
    body = api.get(
        "/contacts", params={"filter": window, "fields": "update_time", "page_size": 1000}
    )
    times = [c["update_time"] for c in body.json()["contacts"]]
    assert times
    assert all(t >= iso_ms(start) for t in times)
    assert len(times) == sum(1 for c in contacts if c.update_ms >= start)
    ids = ",".join(str(c.id) for c in contacts[:3])
    body = api.get("/contacts", params={"filter": f"ids=={ids}"})
    assert {c["id"] for c in body.json()["contacts"]} == set(ids.split(","))


def test_update_time_filter_needs_keaps_time_format(api: httpx.Client) -> None:
    response = api.get("/contacts", params={"filter": "start_update_time==2026-01-01"})
    assert response.status_code == 400
    assert "milliseconds" in response.json()["message"]


def test_page_token_is_bound_to_its_filter(api: httpx.Client) -> None:
    token = api.get("/contacts", params={"page_size": 5, "order_by": "id"}).json()[
        "next_page_token"
    ]
    response = api.get(
        "/contacts", params={"page_size": 5, "order_by": "email", "page_token": token}
    )
    assert response.status_code == 400


def three_address_contact(sandbox: RunningSandbox) -> int:
    return next(c.id for c in sandbox.state.contacts.values() if len(c.emails) == 3)


def test_patch_removes_only_the_omitted_address(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = three_address_contact(sandbox)
    before = dict(sandbox.state.contacts[cid].emails)
    keep = [
        {"email": before["EMAIL1"], "field": "EMAIL1"},
        {"email": before["EMAIL3"], "field": "EMAIL3"},
    ]
    response = api.patch(
        f"/contacts/{cid}",
        params={"update_mask": "email_addresses", "fields": "email_addresses"},
        json={"email_addresses": keep},
    )
    assert response.status_code == 200, response.text
    after = {i["field"]: i["email"] for i in response.json()["email_addresses"]}
    assert after == {"EMAIL1": before["EMAIL1"], "EMAIL3": before["EMAIL3"]}
    assert cid not in sandbox.state.contacts_with(before["EMAIL2"])
    assert sandbox.state.address(before["EMAIL2"]) is not None  # the status row outlives the link


def test_patch_bumps_update_time(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = sandbox.state.contact_ids[0]
    old = sandbox.state.contacts[cid].update_ms
    api.patch(
        f"/contacts/{cid}",
        params={"update_mask": "given_name"},
        json={"given_name": "Renamed"},
    )
    assert sandbox.state.contacts[cid].given_name == "Renamed"
    assert sandbox.state.contacts[cid].update_ms >= old


@pytest.mark.parametrize(
    "items",
    [
        [{"email": "", "field": "EMAIL1"}],
        [
            {"email": "a@example.com", "field": "EMAIL1"},
            {"email": "b@example.com", "field": "EMAIL1"},
        ],
        [{"email": "not-an-address", "field": "EMAIL1"}],
        [{"email": "x" * 70 + "@example.com", "field": "EMAIL1"}],
    ],
)
def test_patch_refuses_bad_address_lists(
    sandbox: RunningSandbox, api: httpx.Client, items: list[dict[str, str]]
) -> None:
    cid = sandbox.state.contact_ids[0]
    before = sandbox.state.contacts[cid].emails
    response = api.patch(
        f"/contacts/{cid}",
        params={"update_mask": "email_addresses"},
        json={"email_addresses": items},
    )
    assert response.status_code == 400
    assert sandbox.state.contacts[cid].emails == before


def test_patch_with_all_fields_reads_back(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = sandbox.state.contact_ids[1]
    response = api.get(f"/contacts/{cid}", params={"fields": ALL_CONTACT_FIELDS})
    assert {"email_addresses", "tag_ids", "update_time"} <= set(response.json())
