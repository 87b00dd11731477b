from __future__ import annotations

import time

import httpx
import pytest

from connector.sandbox import FaultSettings, RunningSandbox
from connector.sandbox.faults import FaultInjector
from connector.sandbox.messages import ApiError
from tests.fixtures_sandbox import SandboxFactory


def test_outage_answers_503_then_ends(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.set_faults(outage_seconds=0.5)
    response = api.get("/users")
    assert response.status_code == 503
    assert response.json()["code"] == 503
    assert "x-keap-product-throttle-available" in response.headers
    time.sleep(0.6)
    assert api.get("/users").status_code == 200
    assert sandbox.stats()["faults"]["outage"] == 1


def test_error_rate_switches_on_and_off(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.set_faults(error_rate=1.0)
    assert {api.get("/users").status_code for _ in range(5)} == {503}
    sandbox.set_faults(error_rate=0.0)
    assert {api.get("/users").status_code for _ in range(5)} == {200}


def test_partial_error_rate_fails_some(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.set_faults(error_rate=0.5)
    statuses = [api.get("/users").status_code for _ in range(40)]
    assert 5 < statuses.count(503) < 35


def test_latency_is_added_and_removed(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.set_faults(latency_ms=300)
    started = time.perf_counter()
    api.get("/users")
    assert time.perf_counter() - started >= 0.3
    sandbox.clear_faults()
    started = time.perf_counter()
    api.get("/users")
    assert time.perf_counter() - started < 0.3


def test_drop_closes_the_connection_without_a_response(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    sandbox.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("/users")
    sandbox.clear_faults()
    assert api.get("/users").status_code == 200
    assert sandbox.stats()["faults"]["dropped"] == 1


def test_drop_only_the_next_note_creation(sandbox: RunningSandbox, api: httpx.Client) -> None:
    sandbox.set_faults(drop_count=1, method="POST", path=r"/contacts/[^/]+/notes$")
    cid = sandbox.state.contact_ids[0]
    assert api.get(f"/contacts/{cid}/notes").status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(f"/contacts/{cid}/notes", json={"title": "a", "user_id": "1"})
    assert len(sandbox.state.notes) == 0
    assert (
        api.post(f"/contacts/{cid}/notes", json={"title": "a", "user_id": "1"}).status_code == 201
    )
    assert sandbox.app.faults.settings.drop_count == 0


def test_faults_change_over_the_inspection_api(
    sandbox: RunningSandbox, api: httpx.Client, inspect: httpx.Client
) -> None:
    changed = inspect.post("/faults", json={"error_rate": 1.0, "error_status": 500})
    assert changed.json()["error_rate"] == 1.0
    assert api.get("/users").status_code == 500
    inspect.post("/faults", json={"reset": True})
    assert inspect.get("/faults").json()["error_rate"] == 0.0
    assert api.get("/users").status_code == 200
    assert inspect.post("/faults", json={"drop_rate": 3}).status_code == 400
    assert inspect.post("/faults", json={"nonsense": 1}).status_code == 400


def test_faults_set_at_start_up(sandbox_factory: SandboxFactory) -> None:
    running = sandbox_factory(faults=FaultSettings(error_rate=1.0))
    response = httpx.get(
        f"{running.base_url}/rest/v2/users", headers={"X-Keap-API-Key": running.api_key}
    )
    assert response.status_code == 503


def test_faults_do_not_touch_the_token_endpoint_unless_asked() -> None:
    injector = FaultInjector(FaultSettings(error_rate=1.0))
    assert injector.decide("POST", "/token").error_status is None
    injector.update({"path": "^/token$"})
    assert injector.decide("POST", "/token").error_status == 503


def test_changing_latency_does_not_restart_an_outage() -> None:
    injector = FaultInjector()
    injector.update({"outage_seconds": 0.2})
    time.sleep(0.25)
    injector.update({"latency_ms": 1})
    assert injector.decide("GET", "/crm/rest/v2/users").error_status is None


def test_invalid_regex_is_refused() -> None:
    with pytest.raises(ApiError):
        FaultInjector().update({"path": "("})


def test_drop_after_handling_creates_the_note_and_loses_the_answer(
    sandbox: RunningSandbox, api: httpx.Client, inspect: httpx.Client
) -> None:
    sandbox.set_faults(
        drop_count=1, drop_after_handling=True, method="POST", path=r"/contacts/[^/]+/notes$"
    )
    cid = sandbox.state.contact_ids[0]
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(f"/contacts/{cid}/notes", json={"title": "a", "user_id": "1"})
    assert len(sandbox.state.notes) == 1, "the request was carried out before the drop"
    assert sandbox.stats()["faults"]["dropped"] == 1
    assert (
        api.post(f"/contacts/{cid}/notes", json={"title": "b", "user_id": "1"}).status_code == 201
    )
    assert len(sandbox.state.notes) == 2
    assert inspect.post("/faults", json={"drop_after_handling": "yes"}).status_code == 400
