"""``connector serve`` as a real process against the sandbox, driven by Keap-style callbacks."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest

from connector.bounces import BounceCategory, BounceType
from connector.sandbox import RunningSandbox
from connector.sandbox.state import EmailItem
from connector.store import EventStatus
from tests.fixtures_connector import Connector

pytestmark = pytest.mark.slow

MARKER = re.compile(r"\[bounce-connector event (\d+)\]")


def new_contact(sandbox: RunningSandbox, *emails: str) -> int:
    items = [EmailItem(f"EMAIL{i + 1}", e, "e2e") for i, e in enumerate(emails)]
    contact = sandbox.state.add_contact("Grace", "Hopper", items)
    for email in emails:
        sandbox.state.set_status(email, "SINGLE_OPT_IN")
    return contact.id


def tags_of(sandbox: RunningSandbox, contact_id: int) -> set[str]:
    state = sandbox.state
    return {state.tags[t].name for t in state.tag_ids_of(contact_id)}


def status_of(sandbox: RunningSandbox, email: str) -> str:
    address = sandbox.state.address(email)
    assert address is not None
    return address.status


def note_markers(sandbox: RunningSandbox) -> Counter[int]:
    return Counter(
        int(found) for note in sandbox.state.notes.values() for found in MARKER.findall(note.text)
    )


def expected_for(bounce: BounceType) -> tuple[set[str], bool, int]:
    """Tags, opted out, notes after one callback, as the default policy says."""
    if bounce is BounceType.HARD_BOUNCE:
        return {"First Hard Bounce"}, False, 1
    if bounce is BounceType.UNSUBSCRIBE_REQUEST:
        return set(), True, 1
    if (
        bounce.category is BounceCategory.BLOCK
        or bounce is BounceType.SOFT_BOUNCE_MESSAGE_TOO_LARGE
    ):
        return {"Mail Block - Sender Review"}, False, 1
    return set(), False, 0


def test_every_bounce_type_through_serve(connector: Connector, sandbox: RunningSandbox) -> None:
    served = connector.serve()
    contacts: dict[BounceType, tuple[int, str]] = {}
    for index, bounce in enumerate(BounceType):
        email = f"{bounce.value}@example.com"
        cid = new_contact(sandbox, f"keep-{index}@example.com", email)
        contacts[bounce] = (cid, email)
        if index % 2:
            reply = served.post(
                f"/keap/bounce/{quote(bounce.label)}", f"contactId={cid}&Email={email}"
            )
        else:
            reply = served.post(
                "/keap/bounce", f"Contact0Id={cid}&Email={email}&bounce_type={bounce.value}"
            )
        assert reply.status_code == 202, reply.text
    events = connector.wait_until_settled(len(BounceType))
    assert all(e.status is EventStatus.DONE for e in events), [e.last_error for e in events]
    for bounce, (cid, email) in contacts.items():
        tags, opted_out, notes = expected_for(bounce)
        assert tags_of(sandbox, cid) == tags, bounce
        assert status_of(sandbox, email) == ("MANUAL" if opted_out else "SINGLE_OPT_IN"), bounce
        index = list(BounceType).index(bounce)
        assert status_of(sandbox, f"keep-{index}@example.com") == "SINGLE_OPT_IN", "other address"
        assert len(sandbox.state.notes_of(cid)) == notes, bounce
    assert sandbox.stats()["spec_violations"] == 0, sandbox.stats()["violations"]


def test_three_strikes_and_duplicates_count_once(
    connector: Connector, sandbox: RunningSandbox
) -> None:
    policy = Path(connector.workdir / "policy.toml")
    text = (Path(__file__).parents[2] / "connector" / "default_policy.toml").read_text()
    policy.write_text(text.replace('dedupe_window = "10m"', 'dedupe_window = "2s"'))
    served = connector.serve()
    cid = new_contact(sandbox, "strikes@example.com")
    expected = [{"First Hard Bounce"}, {"Second Hard Bounce"}, {"Third Strike"}]
    for strike, tags in enumerate(expected, start=1):
        replies = [
            served.post("/keap/bounce/hard_bounce", f"contactId={cid}&Email=strikes%40example.com")
            for _ in range(5)
        ]
        assert [r.json()["status"] for r in replies] == ["queued"] + ["duplicate"] * 4
        connector.wait_until_settled(strike)
        assert tags_of(sandbox, cid) == tags
        time.sleep(2.1)
    assert status_of(sandbox, "strikes@example.com") == "MANUAL"
    assert len(sandbox.state.notes_of(cid)) == 3
    assert len(sandbox.state.tasks_of(cid)) == 1
    opt_outs = [
        r for r in sandbox.stats()["log"] if r["method"] == "PATCH" and "status" in r["path"]
    ]
    assert len(opt_outs) == 1


def test_blank_policy_removes_only_the_bounced_address(
    connector: Connector, sandbox: RunningSandbox
) -> None:
    (connector.workdir / "policy.toml").write_text(
        '[[rule]]\nbounce = "hard_bounce"\naction = "blank_email"\nnote = true\n'
    )
    served = connector.serve()
    cid = new_contact(sandbox, "a@example.com", "b@example.com", "c@example.com")
    assert (
        served.post("/keap/bounce/hard_bounce", f"contactId={cid}&Email=b@example.com").status_code
        == 202
    )
    connector.wait_until_settled(1)
    emails = dict(sandbox.state.contacts[cid].emails)
    assert emails == {"EMAIL1": "a@example.com", "EMAIL3": "c@example.com"}
    (note,) = sandbox.state.notes_of(cid)
    assert "b@example.com" in note.text
    audit = connector.run("audit", "--contact", str(cid))
    blanked = "blank EMAIL2 b***@example.com: done"
    assert blanked in audit.stdout
    action_id = next(
        line.split("│")[1].strip() for line in audit.stdout.splitlines() if blanked in line
    )
    undone = connector.run("undo", action_id)
    assert undone.returncode == 0, undone.stderr
    assert dict(sandbox.state.contacts[cid].emails)["EMAIL2"] == "b@example.com"


def test_outage_while_callbacks_arrive(connector: Connector, sandbox: RunningSandbox) -> None:
    served = connector.serve()
    contacts = [new_contact(sandbox, f"o{i}@example.com") for i in range(20)]
    sandbox.set_faults(outage_seconds=4)
    for cid in contacts:
        reply = served.post("/keap/bounce/unsubscribe_request", f"contactId={cid}")
        assert reply.status_code == 202, "the store, not Keap, decides the answer"
    events = connector.wait_until_settled(20, timeout=180)
    assert all(e.status is EventStatus.DONE for e in events)
    assert sandbox.stats()["faults"]["outage"] > 0, "the outage was really hit"
    for i in range(20):
        assert status_of(sandbox, f"o{i}@example.com") == "MANUAL"
    markers = note_markers(sandbox)
    assert sorted(markers) == sorted(e.id for e in events)
    assert set(markers.values()) == {1}, "one note per remediation"


def test_sigkill_mid_processing_then_restart(connector: Connector, sandbox: RunningSandbox) -> None:
    connector.env["CONNECTOR_LEASE_SECONDS"] = "3"
    sandbox.set_faults(latency_ms=150)
    served = connector.serve()
    contacts = [new_contact(sandbox, f"k{i}@example.com") for i in range(30)]
    for cid in contacts:
        assert (
            served.post("/keap/bounce/unsubscribe_request", f"contactId={cid}").status_code == 202
        )
    time.sleep(1.0)
    served.kill()
    before = connector.events()
    assert any(e.status is not EventStatus.DONE for e in before), "killed before the end"
    sandbox.clear_faults()
    connector.serve()
    events = connector.wait_until_settled(30, timeout=180)
    assert len(events) == 30
    assert all(e.status is EventStatus.DONE for e in events)
    markers = note_markers(sandbox)
    assert sorted(markers) == sorted(e.id for e in events)
    assert set(markers.values()) == {1}, "no duplicate notes after the kill"


def test_revoked_credentials_keep_events_queued_with_one_clear_error(
    connector: Connector, sandbox: RunningSandbox
) -> None:
    connector.env["KEAP_API_KEY"] = "KeapAK-not-a-valid-key-000000"
    served = connector.serve()
    cid = new_contact(sandbox, "auth@example.com")
    assert served.post("/keap/bounce/unsubscribe_request", f"contactId={cid}").status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (event,) = connector.events()
        if event.last_error:
            break
        time.sleep(0.2)
    assert event.status is EventStatus.QUEUED, "kept, not dead"
    assert "connector auth login" in (event.last_error or "") or "KEAP_API_KEY" in (
        event.last_error or ""
    )
    log = served.log.read_text()
    assert log.count("Keap refused our credentials") == 1
    assert "KeapAK-not-a-valid-key" not in log
    assert "Traceback" not in log


def test_bad_callbacks_get_4xx_from_the_real_server(connector: Connector) -> None:
    served = connector.serve()
    assert served.post("/keap/bounce/hard_bounce", "contactId=1", key="wrong").status_code == 401
    assert served.post("/keap/bounce/nonsense", "contactId=1").status_code == 400
    assert served.post("/keap/bounce/hard_bounce", "x=" + "y" * 70_000).status_code == 413
    assert "e2e-webhook-secret" not in served.log.read_text(), "the key is never logged"
    assert connector.events() == []
