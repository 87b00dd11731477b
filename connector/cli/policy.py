"""``connector policy``: write, validate and show the remediation policy."""

from __future__ import annotations

from pathlib import Path

import typer

from connector.cli.base import settings, typer_app
from connector.cli.render import add_row, print_table, table, visible, visible_lines

app = typer_app("The remediation policy: write, validate, show.")


@app.command("init")
def policy_init(
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the commented default policy to CONNECTOR_POLICY_FILE."""
    from connector import policy

    path = policy.write_default_policy(settings().connector_policy_file, force=force)
    typer.echo(f"wrote {visible(path)}; edit it, then run `connector policy check`")


@app.command("check")
def policy_check(
    file: Path | None = typer.Argument(None, help="Policy file (default CONNECTOR_POLICY_FILE)."),
) -> None:
    """Validate a policy file: a summary, or every problem on its own line."""
    from connector import policy

    path = file or settings().connector_policy_file
    problems = policy.check_policy_file(path)
    if problems:
        for problem in problems:
            typer.echo(visible(problem), err=True)
        raise typer.Exit(1)
    typer.echo(visible_lines(policy.policy_summary(policy.load_policy(path))))


@app.command("show")
def policy_show() -> None:
    """Print the effective rules (the file's, or the built-in default)."""
    from connector import policy

    loaded = policy.load_policy(settings().connector_policy_file)
    rules = table(*policy.RULE_COLUMNS, title=loaded.source)
    for row in policy.effective_rules(loaded):
        add_row(rules, *(row[c] for c in policy.RULE_COLUMNS))
    print_table(rules)
    typer.echo(visible_lines(policy.policy_summary(loaded)))
