"""The ``connector`` command: parse arguments, call the core, render the result.

One module per command group; each command imports the core it uses inside its function, so
``connector --help`` and ``connector policy check`` load no simulator, database driver or ASGI
server (``tests/cli/test_imports.py``):

- :mod:`~connector.cli.base`: the group class (every ``ConnectorError`` becomes one line on
  stderr and exit status 1; Ctrl-C exits 130), the app factory, settings, the store helper;
- :mod:`~connector.cli.render`: consoles, tables and :func:`~connector.cli.render.inert`, the
  one way outside data reaches the terminal;
- :mod:`~connector.cli.serve` (serve, worker), :mod:`~connector.cli.sync` (and ``sync_view``),
  :mod:`~connector.cli.auth`, :mod:`~connector.cli.policy`, :mod:`~connector.cli.events`
  (events, audit, undo), :mod:`~connector.cli.report`, :mod:`~connector.cli.db`,
  :mod:`~connector.cli.doctor`, :mod:`~connector.cli.sandbox` (sandbox, demo),
  :mod:`~connector.cli.triggers` (the Keap setup sheet), :mod:`~connector.cli.alerts`
  (alerts test, alerts list).

Nothing here decides policy or talks to Keap directly.
"""

from __future__ import annotations

import typer

from connector import __version__
from connector.cli import (
    alerts,
    auth,
    db,
    doctor,
    events,
    init,
    policy,
    report,
    sandbox,
    serve,
    sync,
    triggers,
)
from connector.cli.base import typer_app, warn_unknown_settings

app = typer_app("Keeps Keap contact lists clean when email bounces.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"connector {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Keeps Keap contact lists clean when email bounces."""
    warn_unknown_settings()


def main() -> None:
    app()


# The order of `connector --help`: the single commands, then the groups.
app.command()(init.init)
app.command()(serve.serve)
app.command()(serve.worker)
app.add_typer(auth.app, name="auth")
app.add_typer(policy.app, name="policy")
app.add_typer(events.app, name="events")
app.command()(events.audit)
app.command()(events.undo)
app.add_typer(db.app, name="db")
app.command("doctor")(doctor.doctor_command)
app.command()(sync.sync)
app.command()(sandbox.sandbox)
app.command()(report.report)
app.command()(triggers.triggers)
app.add_typer(alerts.app, name="alerts")
app.command()(sandbox.demo)
