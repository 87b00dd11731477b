from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import API_KEY_DEFAULT_RPS, OAUTH_DEFAULT_RPS, load_settings
from connector.errors import ConfigError, InputError


def test_defaults_match_the_design_contract() -> None:
    s = load_settings()
    assert s.keap_api_base_url == "https://api.infusionsoft.com/crm"
    assert s.keap_token_url == "https://api.infusionsoft.com/token"
    assert s.keap_authorize_url == "https://accounts.infusionsoft.com/app/oauth/authorize"
    assert s.connector_database_url == "sqlite:///connector.db"
    assert s.connector_policy_file == Path("policy.toml")
    assert s.connector_dry_run is False
    assert s.connector_log_format == "text"
    assert s.connector_webhook_secret is None
    assert s.rest_v2_url == "https://api.infusionsoft.com/crm/rest/v2"


def test_rate_default_depends_on_credential_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().requests_per_second == OAUTH_DEFAULT_RPS
    monkeypatch.setenv("KEAP_API_KEY", "KeapAK-abcdef")
    assert load_settings().requests_per_second == API_KEY_DEFAULT_RPS
    monkeypatch.setenv("KEAP_REQUESTS_PER_SECOND", "2.5")
    assert load_settings().requests_per_second == 2.5


def test_reads_dotenv_in_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("CONNECTOR_DRY_RUN=true\nKEAP_USER_ID=42\n")
    s = load_settings()
    assert s.connector_dry_run is True
    assert s.keap_user_id == "42"
    monkeypatch.setenv("KEAP_USER_ID", "7")
    assert load_settings().keap_user_id == "7", "the environment wins over .env"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KEAP_REQUESTS_PER_SECOND", "fast"),
        ("KEAP_REQUESTS_PER_SECOND", "0"),
        ("KEAP_API_BASE_URL", "ftp://example.com"),
        ("CONNECTOR_DATABASE_URL", "mysql://localhost/db"),
        ("CONNECTOR_DRY_RUN", "perhaps"),
        ("CONNECTOR_LOG_FORMAT", "xml"),
        ("KEAP_REDIRECT_URI", "not a url"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in str(caught.value)
    assert isinstance(caught.value, InputError)


def test_secrets_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEAP_API_KEY", "KeapAK-very-secret-value")
    monkeypatch.setenv("KEAP_CLIENT_SECRET", "client-secret-value")
    monkeypatch.setenv("CONNECTOR_WEBHOOK_SECRET", "hook-secret-value")
    s = load_settings()
    for text in (repr(s), str(s), str(s.model_dump())):
        assert "very-secret" not in text
        assert "client-secret-value" not in text
        assert "hook-secret-value" not in text


def test_blank_secret_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEAP_API_KEY", "  ")
    assert load_settings().uses_api_key is False
