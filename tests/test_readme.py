"""The README is the product manual: every command is in it, and every command explains itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from connector.cli import app

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every leaf command as the words a user types after ``connector``."""
    root = typer.main.get_command(app)

    def walk(command: object, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        children = getattr(command, "commands", None)
        if not children:
            yield prefix
            return
        for name, child in children.items():
            yield from walk(child, (*prefix, name))

    yield from walk(root, ())


PATHS = sorted(command_paths())


def test_the_cli_has_every_contract_command() -> None:
    names = {" ".join(p) for p in PATHS}
    for expected in (
        "serve",
        "worker",
        "sync",
        "auth login",
        "auth status",
        "auth refresh",
        "auth logout",
        "policy init",
        "policy check",
        "policy show",
        "events list",
        "events show",
        "events retry",
        "audit",
        "undo",
        "report",
        "db migrate",
        "db status",
        "doctor",
        "sandbox",
        "demo",
    ):
        assert expected in names


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) for p in PATHS])
def test_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert f"connector {' '.join(path)}" in README


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) for p in PATHS])
def test_command_has_help(path: tuple[str, ...]) -> None:
    command = typer.main.get_command(app)
    for word in path:
        assert isinstance(command, typer.core.TyperGroup), f"{word}: under a command, not a group"
        command = command.commands[word]
    assert (command.help or "").strip(), f"connector {' '.join(path)} has no help text"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
