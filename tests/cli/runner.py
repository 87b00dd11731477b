"""Running the ``connector`` app in-process, as every CLI test does."""

from __future__ import annotations

from typer.testing import CliRunner

from connector.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``connector ARGS``."""
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
