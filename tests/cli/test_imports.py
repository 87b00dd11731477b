"""``connector --help`` and ``policy check`` load only what they use (issue 12, DESIGN.md 8).

Each runs in a fresh interpreter, which then names every module it loaded; no timing here (the
figures are in the closing note of the change that made the CLI lazy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = (
    "connector.sandbox",
    "connector.service",
    "connector.webhook",
    "openapi_core",
    "werkzeug",
    "psycopg",
    "psycopg_pool",
    "sqlite3",
    "_sqlite3",
    "uvicorn",
    "starlette",
    "httpx",
    "requests",
)

_PROBE = """
import json, runpy, sys
sys.argv = ["connector", *json.loads(sys.argv[1])]
try:
    runpy.run_module("connector", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_by(*args: str, cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], result["modules"]


def forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)]


def test_help_loads_no_driver_server_or_sandbox(tmp_path: Path) -> None:
    code, modules = loaded_by("--help", cwd=tmp_path)
    assert code == 0
    assert "connector.cli" in modules
    assert forbidden(modules) == []


@pytest.mark.parametrize(
    "args", [("sync", "--help"), ("report", "--help"), ("events", "list", "--help")]
)
def test_a_command_help_loads_none_either(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, modules = loaded_by(*args, cwd=tmp_path)
    assert code == 0
    assert forbidden(modules) == []


def test_policy_check_loads_no_driver_server_or_sandbox(tmp_path: Path) -> None:
    code, modules = loaded_by("policy", "init", cwd=tmp_path)
    assert code == 0
    code, modules = loaded_by("policy", "check", cwd=tmp_path)
    assert code == 0
    assert "connector.policy" in modules
    assert forbidden(modules) == []
