"""The ``connector`` command: parse arguments, call the core, render the result.

Every ``ConnectorError`` becomes one line on stderr and exit status 1; Ctrl-C exits 130.
Nothing here decides policy or talks to Keap directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from connector import __version__, policy, service
from connector import demo as demo_core
from connector import doctor as checkup
from connector import report as reporting
from connector import sync as sync_core
from connector import undo as remedies
from connector.config import Settings, load_settings
from connector.errors import ConnectorError, InputError
from connector.keap import auth
from connector.logs import configure, mask_email, scrub
from connector.sandbox import DEFAULT_PORT, SandboxOptions, run_sandbox
from connector.store import AuditEntry, Event, EventStatus, MigrationState, Store

T = TypeVar("T")


class _Group(TyperGroup):
    """Turns the connector's own errors into one stderr line instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click; its Context is private
        try:
            return super().invoke(ctx)
        except ConnectorError as exc:
            typer.echo(f"error: {scrub(str(exc))}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=_Group,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


app = _typer("Keeps Keap contact lists clean when email bounces.")


def settings() -> Settings:
    """Settings for a command; a bad variable stops the command with one clear line."""
    loaded = load_settings()
    configure(loaded.connector_log_format)
    return loaded


def _console() -> Console:
    """A terminal's own width; wide enough not to wrap cells when piped to a file or a test."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


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


def main() -> None:
    app()


# --- serve and worker ------------------------------------------------------------------------


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Only receive and store callbacks; run `connector worker` apart."
    ),
) -> None:
    """Receive Keap's "When an email bounces" HTTP Posts (and process them)."""
    loaded = settings()
    typer.echo(f"Keap HTTP Post URL: {service.webhook_url(host, port)}", err=True)
    typer.echo("(behind HTTPS in production; the key is CONNECTOR_WEBHOOK_SECRET)", err=True)
    asyncio.run(service.serve(loaded, host, port, with_worker=not no_worker))


@app.command()
def worker(
    once: bool = typer.Option(False, "--once", help="Process what is due now, then exit."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Plan and record, write nothing to Keap."
    ),
) -> None:
    """Process queued events: read the contact, apply the policy, write back to Keap."""
    result = asyncio.run(service.work(settings(), once=once, dry_run=dry_run or None))
    if once:
        typer.echo(
            f"processed {result.processed}: {result.done} done, {result.failed} to retry, "
            f"{result.dead} dead, {result.released} waiting for login"
            + (f", {result.lost} taken over by another worker" if result.lost else "")
        )


# --- auth ------------------------------------------------------------------------------------

auth_app = _typer("OAuth2 sign-in and token state (never shows a token).")
app.add_typer(auth_app, name="auth")


@auth_app.command("login")
def auth_login(
    code: str | None = typer.Option(
        None, "--code", help="The code (or the whole redirect URL) Keap sent; skips the prompt."
    ),
) -> None:
    """Authorize the connector with Keap (OAuth2 authorization-code flow)."""
    loaded = settings()
    service.register_secrets(loaded)

    async def run() -> auth.AuthStatus:
        async with service.opened_store(loaded) as store:
            if code is None:
                url = await auth.begin_login(loaded, store)
                typer.echo(f"Open this URL, sign in and allow access:\n\n  {url}\n")
                answer = typer.prompt("Paste the URL Keap redirected you to (or just the code)")
            else:
                answer = code
            return await auth.complete_login(loaded, store, answer)

    typer.echo(f"logged in: {asyncio.run(run()).summary}")


@auth_app.command("status")
def auth_status() -> None:
    """Show the credential mode and token expiry."""
    loaded = settings()

    async def run() -> auth.AuthStatus:
        if loaded.uses_api_key:
            return await auth.auth_status(loaded, None)
        async with service.opened_store(loaded) as store:
            return await auth.auth_status(loaded, store)

    status = asyncio.run(run())
    typer.echo(status.summary)
    if status.scope:
        typer.echo(f"scope: {status.scope}")
    if not status.logged_in or status.expired:
        raise typer.Exit(1)


@auth_app.command("refresh")
def auth_refresh() -> None:
    """Refresh the OAuth2 access token now (the refresh token rotates)."""
    loaded = settings()
    service.register_secrets(loaded)

    async def run() -> auth.AuthStatus:
        async with service.opened_store(loaded) as store:
            return await auth.refresh_now(loaded, store)

    typer.echo(f"refreshed: {asyncio.run(run()).summary}")


@auth_app.command("logout")
def auth_logout() -> None:
    """Forget the stored OAuth2 tokens."""
    loaded = settings()

    async def run() -> None:
        async with service.opened_store(loaded) as store:
            await auth.logout(store)

    asyncio.run(run())
    typer.echo("logged out: stored tokens removed")


# --- policy ----------------------------------------------------------------------------------

policy_app = _typer("The remediation policy: write, validate, show.")
app.add_typer(policy_app, name="policy")


@policy_app.command("init")
def policy_init(
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the commented default policy to CONNECTOR_POLICY_FILE."""
    path = policy.write_default_policy(settings().connector_policy_file, force=force)
    typer.echo(f"wrote {path}; edit it, then run `connector policy check`")


@policy_app.command("check")
def policy_check(
    file: Path | None = typer.Argument(None, help="Policy file (default CONNECTOR_POLICY_FILE)."),
) -> None:
    """Validate a policy file: a summary, or every problem on its own line."""
    path = file or settings().connector_policy_file
    problems = policy.check_policy_file(path)
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1)
    typer.echo(policy.policy_summary(policy.load_policy(path)))


@policy_app.command("show")
def policy_show() -> None:
    """Print the effective rules (the file's, or the built-in default)."""
    loaded = policy.load_policy(settings().connector_policy_file)
    table = Table(title=loaded.source)
    for column in policy.RULE_COLUMNS:
        table.add_column(column)
    for row in policy.effective_rules(loaded):
        table.add_row(*(row[c] for c in policy.RULE_COLUMNS))
    _console().print(table)
    typer.echo(policy.policy_summary(loaded))


# --- events, audit, undo ---------------------------------------------------------------------

events_app = _typer("Inspect and re-queue stored events.")
app.add_typer(events_app, name="events")


def _with_store(fn: Callable[[Store], Awaitable[T]]) -> T:
    loaded = settings()

    async def run() -> T:
        async with service.opened_store(loaded) as store:
            return await fn(store)

    return asyncio.run(run())


@events_app.command("list")
def events_list(
    status: EventStatus | None = typer.Option(None, "--status", help="Only this status."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
) -> None:
    """List stored events, newest first."""
    rows = _with_store(lambda store: store.list_events(status, limit))
    table = Table()
    for column in (
        "id",
        "received",
        "source",
        "type",
        "contact",
        "email",
        "status",
        "tries",
        "note",
    ):
        table.add_column(column)
    for e in rows:
        table.add_row(
            str(e.id),
            f"{e.received_at:%Y-%m-%d %H:%M:%S}",
            e.source,
            e.bounce_type,
            e.contact_id or "-",
            mask_email(e.email or ""),
            e.status.value,
            str(e.attempts),
            (e.last_error if e.status is not EventStatus.DONE else e.outcome) or "",
        )
    _console().print(table)


@events_app.command("show")
def events_show(event_id: int = typer.Argument(..., help="Event id.")) -> None:
    """Show one event with its payload and the audit of its steps."""

    async def fetch(store: Store) -> tuple[Event | None, list[AuditEntry]]:
        return await store.get_event(event_id), await store.audit_for_event(event_id)

    event, steps = _with_store(fetch)
    if event is None:
        raise InputError(f"no event {event_id}", hint="see `connector events list`")
    for name, value in dataclasses.asdict(event).items():
        typer.echo(f"{name:>16}: {scrub(str(value))}")
    for step in steps:
        typer.echo(f"  step {step.step}: {step.status.value} {step.after_value or ''}")


@events_app.command("retry")
def events_retry(
    event_id: int | None = typer.Argument(None, help="Event id to queue again."),
    failed: bool = typer.Option(False, "--failed", help="Queue every failed and dead event."),
) -> None:
    """Queue an event (or every failed/dead one) for another try."""
    if (event_id is None) == (not failed):
        raise InputError("give an event id or --failed (not both)")
    count = _with_store(lambda store: store.requeue(event_id, failed=failed))
    if event_id is not None and count == 0:
        raise InputError(
            f"no event {event_id} that can be retried", hint="see `connector events list`"
        )
    typer.echo(f"queued {count} event(s) again; `connector worker --once` processes them now")


@app.command()
def audit(
    contact: str | None = typer.Option(None, "--contact", help="Only this Keap contact id."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first."),
) -> None:
    """What was done (or planned, in dry run) to whom."""
    rows = _with_store(lambda store: store.list_audit(contact, limit))
    table = Table()
    for column in ("action id", "time", "event", "contact", "step", "status", "before", "after"):
        table.add_column(column)
    for a in rows:
        status = (
            a.status.value
            + (" (dry run)" if a.dry_run else "")
            + (" undone" if a.undone_at else "")
        )
        table.add_row(
            str(a.id),
            f"{a.created_at:%Y-%m-%d %H:%M:%S}",
            str(a.event_id),
            a.contact_id,
            a.step,
            status,
            scrub(a.before_value or ""),
            scrub(a.after_value or ""),
        )
    _console().print(table)


@app.command()
def undo(action_id: int = typer.Argument(..., help="Action id from `connector audit`.")) -> None:
    """Put a blanked address back in its field (opt-outs cannot be reversed through the API)."""
    loaded = settings()

    async def run() -> str:
        async with service.runtime(loaded) as rt:
            return await remedies.undo(rt.store, rt.client, action_id)

    typer.echo(asyncio.run(run()))


# --- database --------------------------------------------------------------------------------

db_app = _typer("The durable store's schema.")
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations (SQLite and PostgreSQL)."""
    loaded = settings()

    async def run() -> list[str]:
        async with service.opened_store(loaded, check=False) as store:
            return await store.migrate()

    applied = asyncio.run(run())
    typer.echo(
        f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "up to date"
    )


@db_app.command("status")
def db_status() -> None:
    """Show each migration and when it was applied."""
    loaded = settings()

    async def run() -> list[MigrationState]:
        async with service.opened_store(loaded, check=False) as store:
            return await store.migration_status()

    states = asyncio.run(run())
    pending = 0
    for state in states:
        when = f"applied {state.applied_at:%Y-%m-%d %H:%M:%S}" if state.applied_at else "pending"
        pending += state.applied_at is None
        typer.echo(f"{state.name}: {when}")
    if pending:
        typer.echo(f"{pending} pending: run `connector db migrate`", err=True)
        raise typer.Exit(1)


# --- doctor ----------------------------------------------------------------------------------


@app.command("doctor")
def doctor_command() -> None:
    """Check settings, the store, Keap credentials, the policy and Keap's throttle headroom."""
    checks = asyncio.run(checkup.diagnose(settings))
    typer.echo(checkup.render(checks))
    if checkup.failed_any(checks):
        raise typer.Exit(1)


# --- sync ------------------------------------------------------------------------------------


@app.command()
def sync(
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="ISO-TIME",
        help="Only contacts updated at or after this time (ISO-8601; UTC when it has no zone).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write nothing to Keap or the store; print the plan."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Stop after queueing N remediations; the next run resumes."
    ),
    restart: bool = typer.Option(
        False, "--restart", help="Ignore the checkpoint of an interrupted run; scan from the start."
    ),
    strategy: sync_core.Strategy = typer.Option(
        sync_core.Strategy.AUTO,
        "--strategy",
        help="contacts: page through every contact; addresses: list the bounced addresses and "
        "look each one up; auto: whichever costs fewer Keap calls.",
    ),
    output_format: sync_core.OutputFormat = typer.Option(
        sync_core.OutputFormat.TABLE, "--format", help="How --dry-run prints the plan."
    ),
) -> None:
    """Backfill: find addresses Keap already marks as bounced and remediate them (resumable)."""
    options = sync_core.SyncOptions(
        since=sync_core.parse_since(since) if since else None,
        dry_run=dry_run,
        limit=limit,
        restart=restart,
        strategy=strategy,
        format=output_format,
    )
    code = sync_core.command(settings(), options)
    if code:
        raise typer.Exit(code)


# --- sandbox ---------------------------------------------------------------------------------


@app.command()
def sandbox(
    port: int = typer.Option(DEFAULT_PORT, help="Port on 127.0.0.1."),
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


# --- report ----------------------------------------------------------------------------------


@app.command()
def report(
    since: str = typer.Option(
        "7d",
        "--since",
        help="Start of the period: a duration back from now (7d, 24h, 2w) or an ISO date/time "
        "(UTC unless it has an offset).",
    ),
    fmt: reporting.ReportFormat = typer.Option(
        reporting.ReportFormat.TABLE, "--format", help="table (terminal), csv, json or html."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Write to this file instead of stdout (csv, json, html)."
    ),
) -> None:
    """The bounce report: who bounced, how often, what was done, the tags now applied."""
    loaded = settings()
    service.register_secrets(loaded)
    now = datetime.now(UTC)
    start = reporting.parse_since(since, now)
    if fmt is reporting.ReportFormat.TABLE and output is not None:
        raise InputError("--format table prints to the terminal", hint="use csv, json or html")

    async def run() -> reporting.Report:
        async with service.opened_store(loaded) as store:
            return await reporting.build_report(store, start, now)

    built = asyncio.run(run())
    if fmt is reporting.ReportFormat.TABLE:
        _console().print(reporting.render_table(built))
        return
    text = reporting.render_text(built, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    reporting.write_report(text, fmt, output)
    typer.echo(f"wrote {output}: {built.totals.contacts} contact(s)", err=True)


# --- demo ------------------------------------------------------------------------------------


@app.command()
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
    try:
        demo_core.run_demo(workdir, sys.stdout, keep=keep)
    finally:
        if not keep:
            demo_core.remove_workdir(workdir)
