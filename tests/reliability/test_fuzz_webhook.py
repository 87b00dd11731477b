"""Row 9: 10,000 generated requests against the real webhook: schemathesis and hypothesis."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis.core.result import Err

from connector.bounces import BounceType
from tests.fixtures_connector import WEBHOOK_SECRET, Connector
from tests.reliability.conftest import Figures

pytestmark = pytest.mark.slow

SCHEMATHESIS_PER_OPERATION = 2_500  # the document has two operations
HYPOTHESIS_EXAMPLES = 5_000


def fuzz_settings(examples: int) -> settings:
    """No example database (CI starts clean) and no deadline (the server is another process)."""
    return settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


FIELD_NAMES = ["contactId", "Contact0Id", "id", "Email", "Contact0Email", "bounce_type", "count"]
TYPE_NAMES = [t.value for t in BounceType] + [t.label for t in BounceType]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/json",
    "APPLICATION/JSON; charset=latin-1",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
]
values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["~Contact.Id~", "~Contact.Email~", "0", "00042", "a@b.c", " 7 "]),
    st.sampled_from(TYPE_NAMES),
)
fields = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=20)), values, max_size=8
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def keap_requests(draw: st.DrawFn) -> tuple[str, bytes, str, str]:
    """What Keap's HTTP Post sends, give or take a field: the storing path gets exercised."""
    callback = draw(fields)
    callback[draw(st.sampled_from(["contactId", "Contact0Id"]))] = str(draw(st.integers(0, 10**12)))
    typed = draw(st.sampled_from(TYPE_NAMES))
    path = draw(st.sampled_from(["/keap/bounce", f"/keap/bounce/{quote(typed)}"]))
    if path == "/keap/bounce":
        callback["bounce_type"] = typed
    content_type = draw(st.sampled_from([*CONTENT_TYPES[:2], ""]))
    key = draw(st.sampled_from(["query", "header", "wrong", "none"]))
    return path, urlencode(callback).encode(), content_type, key


@st.composite
def fuzz_requests(draw: st.DrawFn) -> tuple[str, bytes, str, str]:
    """Anything at all: any path below the webhook, body, content type and key placement."""
    path = draw(
        st.one_of(
            st.sampled_from(["/keap/bounce", "/keap/bounce/"]),
            st.sampled_from(TYPE_NAMES).map(lambda t: f"/keap/bounce/{quote(t)}"),
            st.text(min_size=1, max_size=30).map(lambda t: f"/keap/bounce/{quote(t, safe='')}"),
        )
    )
    content_type = draw(
        st.one_of(
            st.sampled_from(CONTENT_TYPES),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
        )
    )
    key = draw(st.sampled_from(["query", "header", "wrong", "none", "both-wrong-query"]))
    return path, draw(bodies()), content_type, key


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["form", "json", "json-any", "bytes", "huge"]))
    if kind == "form":
        return urlencode(draw(fields)).encode()
    if kind == "json":
        return json.dumps(draw(fields)).encode()
    if kind == "json-any":
        return json.dumps(draw(st.dictionaries(st.text(max_size=12), json_values))).encode()
    if kind == "huge":
        return b"contactId=1&pad=" + b"x" * draw(st.integers(60_000, 70_000))
    return draw(st.binary(max_size=300))


@dataclass
class Ledger:
    """What was sent and answered: the statuses, and the bodies that carried the right key."""

    statuses: Counter[int] = field(default_factory=Counter)
    keyed_bodies: set[str] = field(default_factory=set)
    queued: int = 0
    sent: int = 0
    generated: int = 0

    def record(self, keyed: bool, body: bytes, status: int, reply: str) -> None:
        self.sent += 1
        self.statuses[status] += 1
        assert status < 500, f"{status}: {reply[:300]}"
        if keyed:
            self.keyed_bodies.add(body.decode("utf-8", "replace"))
        assert keyed or status != 202, "an event was acknowledged without the right key"
        if status == 202 and json.loads(reply)["status"] == "queued":
            self.queued += 1


def carried_key(url: str, headers: Any) -> bool:
    """Whether the webhook would see the right key: the query's (last) ``key``, else the header."""
    query = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == "key"]
    if query and query[-1]:
        return query[-1] == WEBHOOK_SECRET
    return bool(headers.get("X-Connector-Key") == WEBHOOK_SECRET)


def run_schemathesis(url: str, ledger: Ledger) -> None:
    """Cases generated from the webhook's own OpenAPI document, half given the right key."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    session = requests.Session()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document does not load: nothing to fuzz
        operation = result.ok()

        @fuzz_settings(SCHEMATHESIS_PER_OPERATION)
        @given(case=operation.as_strategy(), where=st.sampled_from(["query", "header", "as is"]))
        def check(case: schemathesis.Case[Any], where: str) -> None:
            ledger.generated += 1
            if where == "query":
                case.query = {**(case.query or {}), "key": WEBHOOK_SECRET}
            elif where == "header":
                case.query = {k: v for k, v in (case.query or {}).items() if k != "key"}
                headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict(case.headers or {})
                headers["X-Connector-Key"] = WEBHOOK_SECRET
                case.headers = headers
            try:
                response = case.call(base_url=url, session=session, timeout=10)
            except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
                return  # the client refused to send it; nothing reached the server
            sent = response.request
            body = sent.body.encode() if isinstance(sent.body, str) else (sent.body or b"")
            keyed = carried_key(sent.url or "", sent.headers)
            ledger.record(keyed, body, response.status_code, response.text)

        check()


def run_hypothesis(url: str, ledger: Ledger) -> None:
    """Keap-shaped callbacks and garbage, with every way of giving (or not giving) the key."""
    client = httpx.Client(base_url=url, timeout=10)

    @fuzz_settings(HYPOTHESIS_EXAMPLES)
    @given(request=st.one_of(keap_requests(), fuzz_requests()))
    def check(request: tuple[str, bytes, str, str]) -> None:
        path, body, content_type, key = request
        ledger.generated += 1
        params = {"query": {"key": WEBHOOK_SECRET}, "wrong": {"key": WEBHOOK_SECRET[:-1]}}.get(
            key, {}
        )
        headers = {"content-type": content_type} if content_type else {}
        if key in ("header", "both-wrong-query"):
            headers["X-Connector-Key"] = WEBHOOK_SECRET
        if key == "both-wrong-query":
            params = {"key": "wrong"}
        try:
            reply = client.post(path, params=params, content=body, headers=headers)
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            return  # an illegal header value: the client would not send it
        ledger.record(
            carried_key(str(reply.request.url), headers), body, reply.status_code, reply.text
        )

    try:
        check()
    finally:
        client.close()


def test_10000_generated_requests_no_5xx_and_nothing_stored_without_the_key(
    connector: Connector, figures: Figures
) -> None:
    """No input makes the webhook answer 5xx, and only requests with the right key are stored.

    Both generators run against the real ``connector serve --no-worker`` process (the worker is
    beside the point and would spend Keap calls on random contact ids). Afterwards every stored
    event must be the body of a request that carried the right key, and there must be exactly
    as many as the 202 ``queued`` answers.
    """
    served = connector.serve("--no-worker")
    ledger = Ledger()
    run_schemathesis(served.url, ledger)
    from_schema = ledger.generated
    run_hypothesis(served.url, ledger)

    events = connector.events()
    unkeyed = [e.id for e in events if e.raw not in ledger.keyed_bodies]
    log = served.log.read_text()
    figures(
        generated=ledger.generated,
        schemathesis=from_schema,
        hypothesis=ledger.generated - from_schema,
        reached_server=ledger.sent,
        statuses=dict(sorted(ledger.statuses.items())),
        stored=len(events),
        stored_without_key=len(unkeyed),
    )
    assert ledger.generated >= 2 * SCHEMATHESIS_PER_OPERATION + HYPOTHESIS_EXAMPLES
    assert ledger.sent >= 0.9 * ledger.generated, "nearly all were sendable and reached it"
    assert not unkeyed, f"events stored from requests without the right key: {unkeyed[:10]}"
    assert len(events) == ledger.queued
    assert ledger.statuses[202] > 100, "the generators reached the storing path too"
    assert "Traceback" not in log, log[-3000:]
    assert WEBHOOK_SECRET not in log
