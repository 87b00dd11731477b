from __future__ import annotations

import httpx

from connector.sandbox import RunningSandbox


def test_note_needs_a_user_id(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = sandbox.state.contact_ids[0]
    response = api.post(f"/contacts/{cid}/notes", json={"title": "Bounce"})
    assert response.status_code == 400
    assert sandbox.state.notes == {}


def test_note_with_a_user_is_stored_and_listed(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = sandbox.state.contact_ids[0]
    user_id = api.get("/users").json()["users"][0]["id"]
    created = api.post(
        f"/contacts/{cid}/notes",
        json={"title": "Bounce remediation", "text": "old: a@b.c", "user_id": user_id},
    )
    assert created.status_code == 201, created.text
    listed = api.get(f"/contacts/{cid}/notes").json()["notes"]
    assert [n["id"] for n in listed] == [created.json()["id"]]
    assert listed[0]["text"] == "old: a@b.c"


def test_userinfo_global_id_is_not_a_note_user(sandbox: RunningSandbox, api: httpx.Client) -> None:
    info = api.get("/oauth/connect/userinfo").json()
    cid = sandbox.state.contact_ids[0]
    wrong = api.post(f"/contacts/{cid}/notes", json={"title": "x", "user_id": info["id"]})
    assert wrong.status_code == 400
    right = api.post(f"/contacts/{cid}/notes", json={"title": "x", "user_id": info["sub"]})
    assert right.status_code == 201


def test_note_needs_title_or_type(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = sandbox.state.contact_ids[0]
    assert api.post(f"/contacts/{cid}/notes", json={"text": "t", "user_id": "1"}).status_code == 400


def test_task_is_created_for_a_contact(sandbox: RunningSandbox, api: httpx.Client) -> None:
    cid = str(sandbox.state.contact_ids[0])
    response = api.post(
        "/tasks",
        json={
            "title": "Find a new address",
            "assigned_to_user_id": "1",
            "contact_id": cid,
            "priority": "ESSENTIAL",
        },
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["contact_id"] == cid
    assert task["priority"] == "ESSENTIAL"
    assert api.post("/tasks", json={"title": "x"}).status_code == 400


def test_tasks_are_listed_per_contact(sandbox: RunningSandbox, api: httpx.Client) -> None:
    first, second = (str(i) for i in sandbox.state.contact_ids[:2])
    for cid in (first, first, second):
        api.post("/tasks", json={"title": "t", "assigned_to_user_id": "1", "contact_id": cid})
    listed = api.get("/tasks", params={"filter": f"contact_id=={first}"}).json()["tasks"]
    assert [t["contact_id"] for t in listed] == [first, first]
