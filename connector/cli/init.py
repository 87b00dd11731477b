"""``connector init``: a new installation in one sitting (issue 18).

Asks (or takes as flags, for scripts) the credential kind and values, the public HTTPS address
and where to keep state; generates the webhook secret; writes ``.env`` with mode 0600; creates
the store and the default policy; starts the OAuth2 login when that is the credential; runs
``doctor``'s checks; and ends with the Keap setup sheet and the next command.

Re-running it never changes a setting without asking: a value already in ``.env`` is kept and
not asked again; a flag that differs from it is asked about in a terminal, and without one it is
kept unless ``--force``.
"""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from connector.cli.base import run_async
from connector.cli.render import visible
from connector.errors import ConfigError, InputError

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.install import Decision, Origin

SECRETS = frozenset({"KEAP_API_KEY", "KEAP_CLIENT_SECRET", "CONNECTOR_WEBHOOK_SECRET"})
HEADER = (
    "# keap-bounce-connector settings, written by `connector init` (mode 0600: it holds secrets).\n"
    "# Every setting is described in .env.example and the README; real environment variables win."
)


class CredentialKind(enum.StrEnum):
    API_KEY = "api-key"
    OAUTH = "oauth"


@dataclass
class Plan:
    """The settings this run wants, each with where it came from."""

    wanted: dict[str, tuple[str, Origin]] = field(default_factory=dict)

    def want(self, name: str, value: str | None, origin: Origin) -> None:
        if value is not None and value.strip():
            self.wanted[name] = (value.strip(), origin)


@dataclass
class Asker:
    """Prompts in a terminal; without one (or with --non-interactive) it never asks."""

    interactive: bool
    force: bool
    existing: dict[str, str]

    def ask(self, text: str, default: str | None = None, *, hide: bool = False) -> str:
        if not self.interactive:
            raise InputError(f"{text}: not given", hint="pass it as a flag (see --help)")
        answer: str = typer.prompt(text, default=default, hide_input=hide)
        return answer.strip()

    def resolve(self, plan: Plan) -> list[Decision]:
        from connector.install import Decision

        decisions = []
        for name, (value, origin) in plan.wanted.items():
            secret = name in SECRETS
            old = self.existing.get(name)
            if old is None:
                decisions.append(Decision(name, value, "new", secret))
            elif old == value:
                decisions.append(Decision(name, old, "same", secret))
            elif origin != "given":
                decisions.append(Decision(name, old, "kept", secret))
            elif not self._replace(name, secret):
                decisions.append(Decision(name, old, "kept, not replaced", secret))
            else:
                decisions.append(Decision(name, value, "replaced", secret))
        return decisions

    def _replace(self, name: str, secret: bool) -> bool:
        if self.interactive:
            shown = "" if secret else f" ({self.existing[name]})"
            return typer.confirm(f"{name} is already set in .env{shown}; replace it?", False)
        return self.force


def init(
    directory: Path | None = typer.Option(
        None,
        "--dir",
        help="Where to keep the settings (.env), the store and the policy "
        "[default: /var/lib/keap-bounce-connector].",
    ),
    kind: CredentialKind | None = typer.Option(
        None,
        "--credentials",
        help="api-key (a Personal Access Token / Service Account Key) or oauth.",
    ),
    api_key: str | None = typer.Option(None, "--api-key", help="KEAP_API_KEY."),
    client_id: str | None = typer.Option(None, "--client-id", help="KEAP_CLIENT_ID."),
    client_secret: str | None = typer.Option(None, "--client-secret", help="KEAP_CLIENT_SECRET."),
    redirect_uri: str | None = typer.Option(
        None,
        "--redirect-uri",
        help="KEAP_REDIRECT_URI [default: PUBLIC-URL/oauth/callback, answered by `serve`].",
    ),
    public_url: str | None = typer.Option(
        None, "--public-url", help="The public HTTPS address Keap will call (CONNECTOR_PUBLIC_URL)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="CONNECTOR_DATABASE_URL [default: DIR/connector.db]."
    ),
    extra: list[str] = typer.Option(
        [], "--set", help="Any other setting, NAME=VALUE (repeatable), e.g. KEAP_USER_ID=7."
    ),
    non_interactive: bool = typer.Option(
        False, "--non-interactive", help="Never prompt: take flags and existing values only."
    ),
    force: bool = typer.Option(
        False, "--force", help="Without prompts: replace settings already in .env by the flags."
    ),
) -> None:
    """Set up an installation: settings, store, policy, checks, and the Keap setup sheet."""
    from connector import install

    interactive = not non_interactive and sys.stdin.isatty()
    probe = Asker(interactive, force, {})
    target = directory or Path(
        probe.ask("Where to keep settings, store and policy", str(install.STATE_DIR))
        if interactive
        else install.STATE_DIR
    )
    target = install.make_state_dir(target.expanduser().absolute())
    env_path = target / install.ENV_NAME
    existing = install.read_env(env_path)
    asker = Asker(interactive, force, existing)
    typer.echo(f"Installation directory: {visible(target)}")

    plan = Plan()
    _credentials(asker, plan, kind, api_key, client_id, client_secret)
    public = public_url or existing.get("CONNECTOR_PUBLIC_URL")
    if public is None:
        public = asker.ask("The public HTTPS address Keap will call (your reverse proxy)")
    public = _checked_public_url(public)
    plan.want("CONNECTOR_PUBLIC_URL", public, "given")
    oauth = "KEAP_CLIENT_ID" in plan.wanted or "KEAP_CLIENT_ID" in existing
    if oauth and "KEAP_API_KEY" not in plan.wanted:
        default_redirect = public + install.REDIRECT_PATH
        plan.want(
            "KEAP_REDIRECT_URI",
            redirect_uri or default_redirect,
            "given" if redirect_uri else "default",
        )
    plan.want("CONNECTOR_WEBHOOK_SECRET", install.new_webhook_secret(), "generated")
    plan.want(
        "CONNECTOR_DATABASE_URL",
        database_url or f"sqlite:///{target / install.DATABASE_NAME}",
        "given" if database_url else "default",
    )
    plan.want("CONNECTOR_POLICY_FILE", str(target / install.POLICY_NAME), "default")
    plan.want(
        "CONNECTOR_REQUIRE_HTTPS", "true" if public.startswith("https://") else None, "default"
    )
    for item in extra:
        name, value = _setting(item)
        plan.want(name, value, "given")

    decisions = asker.resolve(plan)
    install.write_env(env_path, {d.name: d.value for d in decisions}, HEADER)
    typer.echo(f"Settings: {visible(env_path)} (mode 0600)")
    for decision in decisions:
        typer.echo(f"  {visible(decision.describe())}")

    os.chdir(target)  # every command reads .env from its working directory
    _finish(target)


def _credentials(
    asker: Asker,
    plan: Plan,
    kind: CredentialKind | None,
    api_key: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> None:
    existing = asker.existing
    if kind is None:
        if api_key:
            kind = CredentialKind.API_KEY
        elif client_id or client_secret:
            kind = CredentialKind.OAUTH
        elif (
            "KEAP_API_KEY" in existing
            or {"KEAP_CLIENT_ID", "KEAP_CLIENT_SECRET"} <= existing.keys()
        ):
            return
        else:
            answer = asker.ask("Keap credentials: api-key or oauth", CredentialKind.API_KEY.value)
            try:
                kind = CredentialKind(answer.lower())
            except ValueError:
                raise InputError(f"credentials {answer!r}: use api-key or oauth") from None
    if kind is CredentialKind.API_KEY:
        if api_key is None and "KEAP_API_KEY" not in existing:
            api_key = asker.ask(
                "Keap Personal Access Token or Service Account Key (Keap: Settings > API Settings)",
                hide=True,
            )
        plan.want("KEAP_API_KEY", api_key, "given")
        return
    if client_id is None and "KEAP_CLIENT_ID" not in existing:
        client_id = asker.ask("OAuth2 client id (keys.developer.keap.com)")
    if client_secret is None and "KEAP_CLIENT_SECRET" not in existing:
        client_secret = asker.ask("OAuth2 client secret", hide=True)
    plan.want("KEAP_CLIENT_ID", client_id, "given")
    plan.want("KEAP_CLIENT_SECRET", client_secret, "given")


def _checked_public_url(value: str) -> str:
    from connector.cli.triggers import _public_url

    base, warnings = _public_url(value)
    for warning in warnings:
        typer.echo(f"warning: {visible(warning)}", err=True)
    return base


def _setting(item: str) -> tuple[str, str]:
    from connector.config import known_variables

    name, sep, value = item.partition("=")
    name = name.strip().upper()
    if not sep or name not in known_variables():
        raise InputError(
            f"--set {visible(item)!r}: expected NAME=VALUE with a known setting name",
            hint="the settings are listed in .env.example",
        )
    return name, value


def _finish(target: Path) -> None:
    """Store, policy, login, checks, the setup sheet and the next command (in ``target``)."""
    from connector import install
    from connector.cli.base import settings
    from connector.cli.triggers import SheetFormat, triggers

    loaded = settings()
    _create_store(loaded)
    _policy(loaded)
    login_url = run_async(_start_login(loaded))
    checks_failed = _doctor(loaded, waiting_for_login=login_url is not None)
    if target == install.STATE_DIR and hasattr(os, "geteuid") and os.geteuid() == 0:
        typer.echo(
            f"warning: run as root: the files belong to root; the systemd units run as "
            f"{install.SERVICE_USER}: chown -R {install.SERVICE_USER}: {visible(target)}",
            err=True,
        )
    typer.echo("\nThe Keap setup sheet (`connector triggers --show-key` shows the key to paste):")
    triggers(public_url=None, show_key=False, fmt=SheetFormat.TABLE)
    typer.echo("\nNext:")
    serve = (
        "sudo systemctl enable --now connector-serve.service"
        if target == install.STATE_DIR
        else f"cd {target} && connector serve"
    )
    if login_url is not None:
        typer.echo(f"  1. start the webhook: {serve}")
        typer.echo(f"  2. sign in to Keap: open {visible(login_url)}")
        typer.echo("     (or run `connector auth login` there later)")
        typer.echo("  3. create the triggers above in Keap; `connector doctor` checks it all")
    else:
        typer.echo(f"  1. start the webhook: {serve}")
        typer.echo("  2. create the triggers above in Keap; `connector doctor` checks it all")
    if checks_failed:
        raise typer.Exit(1)


def _create_store(loaded: Settings) -> None:
    from connector import install, service

    async def create() -> None:
        async with service.opened_store(loaded, create_if_empty=True):
            pass

    run_async(create())
    url = loaded.connector_database_url
    if url.lower().startswith("sqlite:"):
        from connector.store.sqlite import sqlite_path

        install.make_private(sqlite_path(url))
    typer.echo(f"Store: {visible(url)} ready")


def _policy(loaded: Settings) -> None:
    from connector import install, policy

    path = loaded.connector_policy_file
    if path.exists():
        typer.echo(f"Policy: {visible(path)} kept")
        return
    policy.write_default_policy(path)
    install.make_private(path)
    typer.echo(f"Policy: wrote the default policy to {visible(path)}")


async def _start_login(loaded: Settings) -> str | None:
    """For an OAuth2 app not signed in yet: start a login (its URL); else ``None``."""
    from connector import service
    from connector.keap import auth

    if loaded.uses_api_key or not loaded.keap_client_id:
        return None
    async with service.opened_store(loaded) as store:
        if await store.load_token() is not None:
            return None
        try:
            url = await auth.begin_login(loaded, store)
        except ConfigError as exc:
            typer.echo(f"warning: cannot start the Keap login: {visible(str(exc))}", err=True)
            return None
    return url


def _doctor(loaded: Settings, *, waiting_for_login: bool) -> bool:
    """doctor's checks; ``True`` when one failed that the next steps will not fix."""
    from connector import doctor

    typer.echo("\nChecks (`connector doctor`):")
    checks = run_async(doctor.run_checks(loaded))
    typer.echo("\n".join(visible(line) for line in doctor.render(checks).splitlines()))
    expected = {"oauth token"} if waiting_for_login else set()
    return any(not c.ok and c.name not in expected for c in checks)
