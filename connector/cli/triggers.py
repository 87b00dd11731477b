"""``connector triggers``: the Keap setup sheet (DESIGN 5), one row per bounce type.

For each of Keap's 18 bounce types: the trigger to create in Keap ("When an email bounces",
the bounce type as Keap names it), the count condition that matches the loaded policy, the
HTTP Post URL (the key masked unless ``--show-key``) and the name/value pairs to paste.

Keap's menu path is taken from Keap's help pages (``KEAP_MENU``); the menus move between Keap
editions, so the sheet says where to look in both the current and the older layout.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import typer

from connector.cli.base import settings
from connector.cli.render import add_row, print_table, table, visible
from connector.errors import InputError

if TYPE_CHECKING:
    from connector.bounces import BounceType
    from connector.policy import Policy

KEAP_MENU = (
    "Marketing > Settings > Template Settings > Email Status Automation "
    "(older accounts: Setup > Misc Settings > Template Settings > Triggers), "
    "then 'When an email bounces' > Add Trigger, with an HTTP Post action"
)
PLACEHOLDER_URL = "https://YOUR-PUBLIC-HOST"
PAIRS = (("contactId", "~Contact.Id~"), ("Email", "~Contact.Email~"))
COLUMNS = (
    "keap_bounce_type",
    "slug",
    "count_condition",
    "rules",
    "http_post_url",
    "name_value_pairs",
    "keap_menu",
)


class SheetFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"


@dataclass(frozen=True)
class TriggerRow:
    label: str
    slug: str
    condition: str
    rules: str
    url: str
    pairs: str


def count_condition(policy: Policy, bounce_type: BounceType) -> tuple[str, str]:
    """The count condition the policy's rules for this type act on, and the rule numbers."""
    rules = [rule for rule in policy.rules if bounce_type in rule.bounce_types]
    if not rules:
        return "any count (optional: no rule, recorded only)", "none"
    numbers = ", ".join(str(rule.index) for rule in rules)
    if any(rule.when.low <= 1 and rule.when.high is None for rule in rules):
        return "any count", numbers
    conditions = list(dict.fromkeys(str(rule.when) for rule in rules))
    return "; ".join(conditions), numbers


def webhook_url(public_url: str, slug: str, key: str | None, *, show_key: bool) -> str:
    shown = "NOT-SET(CONNECTOR_WEBHOOK_SECRET)" if key is None else _key(key, show_key=show_key)
    return f"{public_url}/keap/bounce/{slug}?key={shown}"


def _key(key: str, *, show_key: bool) -> str:
    if show_key:
        return quote(key, safe="")
    return quote(key[:4], safe="") + "*" * 8 if len(key) >= 16 else "*" * 8


def sheet(policy: Policy, public_url: str, key: str | None, *, show_key: bool) -> list[TriggerRow]:
    from connector.bounces import BounceType

    pairs = "; ".join(f"{name} = {value}" for name, value in PAIRS)
    rows = []
    for bounce_type in BounceType:
        condition, rules = count_condition(policy, bounce_type)
        url = webhook_url(public_url, bounce_type.value, key, show_key=show_key)
        rows.append(TriggerRow(bounce_type.label, bounce_type.value, condition, rules, url, pairs))
    return rows


def _public_url(value: str | None) -> tuple[str, list[str]]:
    """The base URL Keap will call, and warnings about it (Keap posts to ports 80/443 only)."""
    if value is None:
        return PLACEHOLDER_URL, [
            "no --public-url given (nor CONNECTOR_PUBLIC_URL): the URLs start with "
            f"{PLACEHOLDER_URL}; "
            "pass the HTTPS address Keap will call (the host in front of `connector serve`)"
        ]
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise InputError(
            f"--public-url {visible(value)!r} is not an http(s) URL",
            hint="e.g. --public-url https://bounces.example.com",
        )
    warnings = []
    if parts.scheme == "http":
        warnings.append("an http:// URL sends the key in clear text: use https://")
    if parts.port not in (None, 80, 443):
        warnings.append(f"Keap's HTTP Post only calls ports 80 and 443, not {parts.port}")
    return value.strip().rstrip("/"), warnings


def triggers(
    public_url: str | None = typer.Option(
        None,
        "--public-url",
        help="The HTTPS address Keap will call (the proxy in front of `connector serve`); "
        "default CONNECTOR_PUBLIC_URL.",
    ),
    show_key: bool = typer.Option(
        False, "--show-key", help="Show CONNECTOR_WEBHOOK_SECRET in the URLs (masked otherwise)."
    ),
    fmt: SheetFormat = typer.Option(SheetFormat.TABLE, "--format", help="table or csv."),
) -> None:
    """The Keap setup sheet: one trigger per bounce type, with the URL and name/value pairs."""
    from connector import policy as policies

    loaded = settings()
    base, warnings = _public_url(public_url or loaded.connector_public_url)
    secret = loaded.connector_webhook_secret
    key = secret.get_secret_value() if secret is not None else None
    if key is None:
        warnings.append("CONNECTOR_WEBHOOK_SECRET is not set: `connector serve` needs it")
    policy = policies.load_policy(loaded.connector_policy_file)
    rows = sheet(policy, base, key, show_key=show_key)
    for warning in warnings:
        typer.echo(f"warning: {visible(warning)}", err=True)
    if fmt is SheetFormat.CSV:
        from connector.report.render_csv import write_csv

        cells = [[r.label, r.slug, r.condition, r.rules, r.url, r.pairs, KEAP_MENU] for r in rows]
        write_csv(COLUMNS, cells, sys.stdout)
        return
    typer.echo(f"In Keap: {KEAP_MENU}.")
    typer.echo(
        "One trigger per bounce type you want handled; the connector counts bounces itself, "
        f"so 'any count' is always safe. Policy: {visible(policy.source)}."
    )
    out = table("Keap bounce type", "count condition", "rules", "HTTP Post URL", "name/value pairs")
    out.columns[0].no_wrap = True  # Keap's label, as it appears in Keap's list
    url_column = out.columns[3]
    url_column.no_wrap = True  # a URL must stay whole to be copied
    url_column.min_width = max(len(row.url) for row in rows)
    for row in rows:
        add_row(out, row.label, row.condition, row.rules, row.url, row.pairs)
    print_table(out)
