"""``connector doctor``: one line per check, each with its fix."""

from __future__ import annotations

import typer

from connector.cli.base import run_async, settings
from connector.cli.render import visible_lines


def doctor_command() -> None:
    """Check settings, the store, Keap credentials, the policy and Keap's throttle headroom."""
    from connector import doctor as checkup

    checks = run_async(checkup.diagnose(settings))
    typer.echo(visible_lines(checkup.render(checks)))
    if checkup.failed_any(checks):
        raise typer.Exit(1)
