"""Pins the error tree: callers branch on its four groups, so moving a class breaks them."""

from __future__ import annotations

import inspect

from connector import errors
from connector.errors import ConnectorError, KeapResponseInfo, KeapThrottledError

EXPECTED_TREE = {
    "RetryableError": "ConnectorError",
    "KeapUnavailableError": "RetryableError",
    "KeapThrottledError": "RetryableError",
    "OutcomeUnknownError": "RetryableError",
    "StoreUnavailableError": "RetryableError",
    "ReauthRequiredError": "ConnectorError",
    "NotAuthenticatedError": "ReauthRequiredError",
    "TokenRevokedError": "ReauthRequiredError",
    "KeapUnauthorizedError": "ReauthRequiredError",
    "InputError": "ConnectorError",
    "ConfigError": "InputError",
    "PolicyError": "InputError",
    "BounceTypeError": "InputError",
    "CallbackError": "InputError",
    "AuthFlowError": "InputError",
    "SyncRefusedError": "InputError",
    "PermanentError": "ConnectorError",
    "KeapRequestError": "PermanentError",
    "KeapForbiddenError": "PermanentError",
    "KeapNotFoundError": "PermanentError",
    "PagingStalledError": "PermanentError",
}


def test_tree_is_pinned() -> None:
    found = {
        name: cls.__bases__[0].__name__
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ConnectorError) and cls is not ConnectorError
    }
    assert found == EXPECTED_TREE


def test_every_error_has_a_single_base() -> None:
    for name in EXPECTED_TREE:
        assert len(getattr(errors, name).__bases__) == 1


def test_message_carries_hint_and_keap_details() -> None:
    info = KeapResponseInfo("GET", "/rest/v2/contacts/1", 429, "req-1", '{"code":429}')
    err = KeapThrottledError("Keap throttled the call", retry_after=2.0, keap=info)
    text = str(err)
    assert "Keap throttled the call" in text
    assert "429" in text
    assert "req-1" in text
    assert "KEAP_REQUESTS_PER_SECOND" in text
    assert err.retry_after == 2.0
