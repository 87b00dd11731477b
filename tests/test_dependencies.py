"""Every third-party package ``connector/`` imports is declared in pyproject.toml (issue 12)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> set[str]:
    """Declared distributions, with what their declared extras pull in (psycopg[pool])."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        names.add(_name(requirement))
        extras = re.search(r"\[([^\]]+)\]", requirement)
        for extra in extras.group(1).split(",") if extras else ():
            for dependency in requires(_name(requirement)) or ():
                if f'extra == "{extra.strip()}"' in dependency:
                    names.add(_name(dependency))
    return names


def _imported() -> dict[str, set[str]]:
    """Top-level third-party module -> the files under connector/ that import it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "connector").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "connector" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    distributions = packages_distributions()
    missing = {
        module: sorted(files)
        for module, files in _imported().items()
        if not {_name(d) for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}


def test_every_declared_package_is_imported() -> None:
    distributions = packages_distributions()
    imported = {_name(d) for module in _imported() for d in distributions.get(module, [module])}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {_name(r) for r in project["dependencies"]} - imported == set()
