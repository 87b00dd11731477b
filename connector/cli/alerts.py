"""``connector alerts test`` and ``alerts list`` (DESIGN 5, 7a): try every channel now; show
the outbox and how each alert's delivery went.

An alert's subject, text and last error quote outside data (an address, a Keap answer, an SMTP
server's reply): every cell reaches the terminal through :mod:`connector.cli.render`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from connector.cli.base import run_async, settings, typer_app, with_store
from connector.cli.render import add_row, print_table, table, visible
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.store import AlertRecord

app = typer_app("Alerts to a person: try the channels, list what was sent.")


@app.command("test")
def alerts_test() -> None:
    """Send a test alert to every configured channel now; one line per channel."""
    from datetime import UTC, datetime

    from connector.alerts import channels_from_settings, send_test_alert
    from connector.service import register_secrets

    loaded = settings()
    register_secrets(loaded)
    channels = channels_from_settings(loaded)
    if not channels:
        raise ConfigError(
            "no alert channel configured",
            hint="set CONNECTOR_ALERT_EMAIL (with CONNECTOR_SMTP_*) or CONNECTOR_ALERT_WEBHOOK_URL",
        )
    results = run_async(send_test_alert(channels, datetime.now(UTC)))
    for name, error in results.items():
        if error is None:
            typer.echo(f"{name}: delivered")
        else:
            typer.echo(f"{name}: failed: {visible(_scrubbed(str(error)))}")
    if any(error is not None for error in results.values()):
        raise typer.Exit(1)


@app.command("list")
def alerts_list(
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many, newest first."),
) -> None:
    """Recent alerts, newest first: kind, subject, delivery per channel, attempts, last error."""
    from connector.alerts import configured_channel_names

    loaded = settings()
    names = configured_channel_names(loaded)
    rows = with_store(lambda store: store.list_alerts(limit))
    shown = table("id", "raised", "kind", "subject", "delivery", "attempts", "last error")
    for record in rows:
        add_row(
            shown,
            record.id,
            f"{record.raised_at:%Y-%m-%d %H:%M:%S}",
            record.kind,
            _scrubbed(record.subject),
            delivery(record, names),
            record.attempts,
            _scrubbed(record.last_error or ""),
        )
    print_table(shown)
    if not names:
        typer.echo(
            "no alert channel configured: alerts are kept but not sent "
            "(CONNECTOR_ALERT_EMAIL, CONNECTOR_ALERT_WEBHOOK_URL)"
        )


def delivery(record: AlertRecord, configured: list[str]) -> str:
    """``email sent 09:01, webhook pending``: each channel that took it, and each still due."""
    parts = [f"{name} sent {when:%H:%M}" for name, when in sorted(record.delivered.items())]
    if record.done_at is None:
        parts += [f"{name} pending" for name in configured if name not in record.delivered]
    return ", ".join(parts) or ("pending" if record.done_at is None else "-")


def _scrubbed(text: str) -> str:
    from connector.logs import scrub

    return scrub(text)
