from __future__ import annotations

import httpx

from connector.sandbox import RunningSandbox


def test_name_filter_is_exact(api: httpx.Client) -> None:
    api.post("/tags", json={"name": "Hard Bounce"})
    api.post("/tags", json={"name": "Hard Bounce 2"})
    found = api.get("/tags", params={"filter": "name==Hard Bounce"}).json()["tags"]
    assert [t["name"] for t in found] == ["Hard Bounce"]
    assert api.get("/tags", params={"filter": "name==hard bounce"}).json()["tags"] == []


def test_create_tag_in_a_category_and_refuse_a_duplicate(api: httpx.Client) -> None:
    category = api.post("/tags/categories", json={"name": "Bounces", "description": "x"})
    assert category.status_code == 201
    category_id = category.json()["id"]
    tag = api.post("/tags", json={"name": "Third Strike", "category": {"id": category_id}})
    assert tag.status_code == 201
    assert tag.json()["category"] == {"id": category_id}
    assert api.post("/tags", json={"name": "Third Strike"}).status_code == 409
    listed = api.get("/tags/categories", params={"filter": "name==Bounces"}).json()
    assert [c["id"] for c in listed["tag_categories"]] == [category_id]


def test_apply_and_remove_one_tag_on_many_contacts(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    tag_id = api.post("/tags", json={"name": "Bounced"}).json()["id"]
    ids = [str(i) for i in sandbox.state.contact_ids[:3]]
    applied = api.post(f"/tags/{tag_id}/contacts:applyTags", json={"contact_ids": [*ids, "1"]})
    assert applied.status_code == 200
    results = applied.json()["results"]
    assert results == {
        ids[0]: "SUCCESS",
        ids[1]: "SUCCESS",
        ids[2]: "SUCCESS",
        "1": "CONTACT_NOT_FOUND",
    }
    again = api.post(f"/tags/{tag_id}/contacts:applyTags", json={"contact_ids": ids[:1]})
    assert again.json()["results"] == {ids[0]: "DUPLICATE"}
    removed = api.post(f"/tags/{tag_id}/contacts:removeTags", json={"contact_ids": ids[:2]})
    assert removed.status_code == 204
    assert sandbox.state.tag(tag_id).contacts == {int(ids[2])}
    tags_of = api.get(f"/contacts/{ids[2]}", params={"fields": "tag_ids"}).json()["tag_ids"]
    assert tag_id in tags_of


def test_unknown_tag_is_404(api: httpx.Client) -> None:
    response = api.post("/tags/999999/contacts:applyTags", json={"contact_ids": ["1"]})
    assert response.status_code == 404
