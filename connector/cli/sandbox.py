"""``connector sandbox`` and ``connector demo``: the built-in Keap simulator.

The only commands that import :mod:`connector.sandbox` (and with it openapi-core and the ASGI
server), inside their functions.
"""

from __future__ import annotations

from pathlib import Path

import typer

# connector.sandbox.options.DEFAULT_PORT, repeated so --help need not load the simulator
# (tests/cli/test_choices.py keeps the two equal).
SANDBOX_PORT = 8765


def sandbox(
    port: int = typer.Option(SANDBOX_PORT, help="Port on 127.0.0.1."),
    contacts: int = typer.Option(1000, min=0, help="Seeded contacts."),
    bounced_fraction: float = typer.Option(
        0.05, min=0.0, max=1.0, help="Share of addresses in a bounce or undeliverable status."
    ),
    requests_per_second: float = typer.Option(25.0, min=0.1, help="Throttle per credential."),
    token_ttl: float = typer.Option(86_400.0, min=1.0, help="Access-token lifetime, seconds."),
    seed: int = typer.Option(1, help="Seed of the generated data."),
    api_key: str | None = typer.Option(None, help="Use this API key instead of a generated one."),
    client_id: str | None = typer.Option(None, help="OAuth2 client id."),
    client_secret: str | None = typer.Option(None, help="OAuth2 client secret."),
) -> None:
    """Run the built-in Keap simulator on 127.0.0.1 (no Keap account needed)."""
    from connector.sandbox import SandboxOptions, run_sandbox

    options = SandboxOptions(
        port=port,
        contacts=contacts,
        bounced_fraction=bounced_fraction,
        requests_per_second=requests_per_second,
        token_ttl=token_ttl,
        seed=seed,
        api_key=api_key,
        client_id=client_id,
        client_secret=client_secret,
    )
    run_sandbox(options)


def demo(
    workdir: Path = typer.Option(
        Path("demo-run"),
        "--workdir",
        help="Directory for the demo's store, policy and logs; a previous demo's files there are "
        "replaced, any other non-empty directory is refused.",
    ),
    keep: bool = typer.Option(
        True,
        "--keep/--no-keep",
        help="Keep the directory afterwards, so `connector report`, `audit` and `events list` "
        "can read the demo's store.",
    ),
) -> None:
    """The whole flow against the built-in Keap simulator: no Keap account, under a minute."""
    import sys

    from connector import demo as demo_core

    try:
        demo_core.run_demo(workdir, sys.stdout, keep=keep)
    finally:
        if not keep:
            demo_core.remove_workdir(workdir)
