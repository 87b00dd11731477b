"""How a sandbox is started; the CLI's flags map one to one onto these fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.errors import InputError
from connector.sandbox.faults import FaultSettings

DEFAULT_PORT = 8765
DEFAULT_CLIENT_ID = "keap-sandbox-client"


@dataclass(frozen=True)
class SandboxOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port (tests); the CLI passes DEFAULT_PORT
    contacts: int = 1000
    bounced_fraction: float = 0.05
    requests_per_second: float = 25.0  # Keap's OAuth limit, 1,500 per minute
    burst: float | None = None  # bucket size; None means one second's worth of requests
    token_ttl: float = 86_400.0  # Keap's access tokens live 24 hours
    seed: int = 1
    api_key: str | None = None  # None generates one
    client_id: str | None = None  # None means DEFAULT_CLIENT_ID
    client_secret: str | None = None  # None generates one
    faults: FaultSettings = field(default_factory=FaultSettings)
    validate: bool = True  # check every API request against Keap's OpenAPI spec
    data_anchor_ms: int | None = None  # "now" of the seeded data; None is today 00:00 UTC
    log_requests: bool = False  # one line per request on stderr

    def effective_client_id(self) -> str:
        return self.client_id or DEFAULT_CLIENT_ID

    def effective_burst(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.requests_per_second)

    def check(self) -> None:
        """Refuse settings the sandbox cannot honour, as one-line errors for the CLI."""
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port must be between 0 and 65535, not {self.port}")
        if self.contacts < 0:
            raise InputError("--contacts must not be negative")
        if not 0 <= self.bounced_fraction <= 1:
            raise InputError("--bounced-fraction must be between 0 and 1")
        if self.requests_per_second <= 0 or (self.burst is not None and self.burst < 1):
            raise InputError("--requests-per-second must be positive (and any burst at least 1)")
        if self.token_ttl <= 0:
            raise InputError("--token-ttl must be positive")
