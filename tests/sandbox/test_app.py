"""The pipeline as a whole: spec validation, unimplemented calls and the stats it keeps."""

from __future__ import annotations

import httpx
import pytest

from connector.sandbox import RunningSandbox
from tests.fixtures_sandbox import SandboxFactory


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "/contacts", {"page_size": "5000"}, None),
        ("PATCH", "/contacts/1001", {"update_mask": "email_addresses,given_name"}, {}),
        ("POST", "/tags/1/contacts:applyTags", {}, {"contact_ids": [1001]}),
        ("PATCH", "/emailAddresses/a@b.com/status", {}, {"opted_in": "no", "reason": "x"}),
        ("GET", "/users", {"page_size": "1000"}, None),
    ],
)
def test_a_request_violating_the_spec_gets_400_and_is_counted(
    sandbox: RunningSandbox,
    api: httpx.Client,
    method: str,
    path: str,
    params: dict[str, str],
    body: object,
) -> None:
    response = api.request(method, path, params=params, json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"code", "message", "status", "details"}
    assert error["code"] == 400
    stats = sandbox.stats()
    assert stats["spec_violations"] == 1
    assert stats["violations"][0]["path"].endswith(path.split("?")[0].replace("@", "@"))


def test_non_json_body_is_a_violation(sandbox: RunningSandbox, api: httpx.Client) -> None:
    response = api.post("/tags", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert sandbox.stats()["spec_violations"] == 1


def test_unknown_path_is_404_and_counted(sandbox: RunningSandbox, api: httpx.Client) -> None:
    assert api.get("/nothing/here").status_code == 404
    assert sandbox.stats()["spec_violations"] == 1


def test_spec_operation_the_sandbox_lacks_is_501(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    response = api.get("/companies")
    assert response.status_code == 501
    assert sandbox.stats()["spec_violations"] == 0


def test_validation_can_be_switched_off(sandbox_factory: SandboxFactory) -> None:
    running = sandbox_factory(validate=False)
    response = httpx.post(
        f"{running.base_url}/rest/v2/tags/101/contacts:applyTags",
        json={"contact_ids": [running.state.contact_ids[0]]},
        headers={"X-Keap-API-Key": running.api_key},
    )
    assert response.status_code == 200
    assert running.stats()["spec_violations"] == 0


def test_stats_count_calls_per_operation_and_log_requests(
    sandbox: RunningSandbox, api: httpx.Client, inspect: httpx.Client
) -> None:
    cid = sandbox.state.contact_ids[0]
    api.get(f"/contacts/{cid}")
    api.get(f"/contacts/{cid}")
    api.get("/users")
    stats = inspect.get("/stats").json()
    assert stats["calls"] == {"getContact": 2, "listPaginatedUsers": 1}
    assert [(e["method"], e["status"]) for e in stats["log"]] == [("GET", 200)] * 3
    assert stats["log"][0]["path"] == f"/crm/rest/v2/contacts/{cid}"
    inspect.post("/stats/reset")
    assert inspect.get("/stats").json()["requests"] == 0


def test_every_response_has_a_request_id(api: httpx.Client) -> None:
    assert api.get("/users").headers["x-request-id"]
    assert api.get("/contacts/1").headers["x-request-id"]
