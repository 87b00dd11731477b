"""Settings: the contract of DESIGN.md section 4, read from the environment and ``.env``.

Every variable name is part of the contract; new settings may be added, none renamed. Secrets are
``SecretStr`` so that ``repr``, logs and error messages show ``**********`` instead of the value.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.errors import ConfigError

OAUTH_DEFAULT_RPS = 20.0
PREFIXES = ("KEAP_", "CONNECTOR_")
ENV_FILE = ".env"
API_KEY_DEFAULT_RPS = 4.0

_SECRET_FIELDS = frozenset(
    {
        "keap_client_secret",
        "keap_api_key",
        "connector_webhook_secret",
        "connector_smtp_password",
        "connector_alert_webhook_url",
    },
)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http(s) URL such as https://api.infusionsoft.com/crm")
    return value.rstrip("/")


class Settings(BaseSettings):
    """All settings of the connector; field ``x_y`` is environment variable ``X_Y``."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    keap_api_base_url: str = "https://api.infusionsoft.com/crm"
    keap_token_url: str = "https://api.infusionsoft.com/token"
    keap_authorize_url: str = "https://accounts.infusionsoft.com/app/oauth/authorize"
    keap_client_id: str | None = None
    keap_client_secret: SecretStr | None = None
    keap_redirect_uri: str | None = None
    keap_api_key: SecretStr | None = None
    keap_user_id: str | None = None
    keap_requests_per_second: float | None = Field(default=None, gt=0, le=1000)
    keap_max_attempts: int = Field(default=6, ge=1, le=50)
    keap_max_retry_seconds: float = Field(default=120.0, gt=0)
    keap_timeout_seconds: float = Field(default=30.0, gt=0)

    connector_database_url: str = "sqlite:///connector.db"
    connector_policy_file: Path = Path("policy.toml")
    connector_webhook_secret: SecretStr | None = None
    connector_dry_run: bool = False
    connector_log_format: Literal["text", "json"] = "text"
    connector_require_https: bool = False
    connector_worker_concurrency: int = Field(default=4, ge=1, le=64)
    connector_max_event_attempts: int = Field(default=8, ge=1, le=100)
    connector_lease_seconds: float = Field(default=300.0, ge=2.0, le=86_400.0)

    # Second round (DESIGN 4): mail for reports and alerts, the link to a contact in Keap.
    connector_smtp_host: str | None = None
    connector_smtp_port: int = Field(default=587, ge=1, le=65_535)
    connector_smtp_user: str | None = None
    connector_smtp_password: SecretStr | None = None
    connector_smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    connector_mail_from: str | None = None
    connector_contact_url: str | None = None
    # Alerts (DESIGN 7a): recipients, and a webhook (Slack-compatible) whose URL is a secret.
    connector_alert_email: str | None = None
    connector_alert_webhook_url: SecretStr | None = None
    # Issue 18: the public HTTPS address of the proxy in front of `serve` (what Keap calls);
    # `init` writes it, `triggers` uses it when --public-url is not given.
    connector_public_url: str | None = None

    @field_validator("connector_alert_email")
    @classmethod
    def _check_alert_email(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from email_validator import EmailNotValidError, validate_email

        addresses = [part.strip() for part in value.split(",") if part.strip()]
        for address in addresses:
            try:
                validate_email(address, check_deliverability=False)
            except EmailNotValidError:
                raise ValueError("expected email addresses separated by commas") from None
        return ",".join(addresses)

    @field_validator("connector_alert_webhook_url")
    @classmethod
    def _check_alert_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http(s) URL")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("connector_contact_url")
    @classmethod
    def _check_contact_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "{contact_id}" not in value:
            raise ValueError(
                "expected a link with {contact_id}, e.g. https://x.infusionsoft.com/..."
            )
        return _http_url(value.strip())

    @field_validator("connector_public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _http_url(value.strip())

    @field_validator("connector_smtp_host", "connector_smtp_user", "connector_mail_from")
    @classmethod
    def _blank_text_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("keap_api_base_url", "keap_token_url", "keap_authorize_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("keap_redirect_uri")
    @classmethod
    def _check_redirect(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("connector_database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].lower()
        if scheme not in ("sqlite", "postgresql", "postgres") or "://" not in value:
            raise ValueError(
                "expected sqlite:///path/to/file.db or postgresql://user@host:port/database"
            )
        return value

    @field_validator(
        "keap_api_key", "connector_webhook_secret", "keap_client_secret", "connector_smtp_password"
    )
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @property
    def uses_api_key(self) -> bool:
        """An API key, when present, wins over OAuth2 (DESIGN.md section 4)."""
        return self.keap_api_key is not None

    @property
    def requests_per_second(self) -> float:
        """The client-side ceiling: the setting, else a default safe for the credential kind."""
        if self.keap_requests_per_second is not None:
            return self.keap_requests_per_second
        return API_KEY_DEFAULT_RPS if self.uses_api_key else OAUTH_DEFAULT_RPS

    @property
    def rest_v2_url(self) -> str:
        return f"{self.keap_api_base_url}/rest/v2"


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one ``ConfigError`` per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        problems.append(f"{field.upper()}: {_expected(field, error['msg'])}")
    return "invalid setting " + "; ".join(problems)


def _expected(field: str, message: str) -> str:
    message = message.removeprefix("Value error, ")
    if field in _SECRET_FIELDS:
        return message.split(",")[0]
    return message


# --- names nobody reads (DESIGN.md section 4) ----------------------------------------------


@dataclass(frozen=True)
class UnknownVariable:
    """A ``KEAP_*``/``CONNECTOR_*`` variable no setting reads: most likely a typo."""

    name: str
    source: str  # "the environment" or ".env"
    suggestion: str | None

    def describe(self) -> str:
        guess = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{self.name}: unknown{guess}"

    @property
    def fix(self) -> str:
        where = "in .env" if self.source == ENV_FILE else "in the environment"
        if self.suggestion:
            return f"rename {self.name} to {self.suggestion} {where}"
        return f"remove {self.name} {where}; the settings are listed in .env.example"


def known_variables() -> frozenset[str]:
    return frozenset(name.upper() for name in Settings.model_fields)


def unknown_variables(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(ENV_FILE)
) -> list[UnknownVariable]:
    """Every ``KEAP_*``/``CONNECTOR_*`` name in the environment or ``.env`` that no setting
    reads, with the closest known name; only names, never values (they may be secrets).

    Names compare case-blind, as the settings are read (``case_sensitive=False``).
    """
    known = known_variables()
    found: dict[str, UnknownVariable] = {}
    sources: list[tuple[str, Iterable[str]]] = [
        ("the environment", list(os.environ if environ is None else environ)),
        (ENV_FILE, _dotenv_names(env_file)),
    ]
    for source, names in sources:
        for raw in names:
            name = raw.upper()
            if not name.startswith(PREFIXES) or name in known or name in found:
                continue
            found[name] = UnknownVariable(name, source, _closest(name, known))
    return sorted(found.values(), key=lambda u: u.name)


def _closest(name: str, known: frozenset[str]) -> str | None:
    """The known name closest to ``name``, compared without the shared prefix (every
    ``CONNECTOR_`` name would otherwise look alike); ``CONNECTOR_API_KEY`` finds ``KEAP_API_KEY``.
    """

    def bare(variable: str) -> str:
        return variable.removeprefix(PREFIXES[0]).removeprefix(PREFIXES[1])

    by_bare: dict[str, str] = {}
    for variable in sorted(known, key=lambda v: not v.startswith(name.split("_", 1)[0])):
        by_bare.setdefault(bare(variable), variable)
    close = difflib.get_close_matches(bare(name), sorted(by_bare), n=1, cutoff=0.7)
    return by_bare[close[0]] if close else None


def _dotenv_names(env_file: Path | None) -> list[str]:
    if env_file is None or not env_file.is_file():
        return []
    from dotenv import dotenv_values

    try:
        return [name for name in dotenv_values(env_file, encoding="utf-8") if name]
    except (OSError, UnicodeDecodeError):
        return []
