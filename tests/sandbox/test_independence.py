"""The sandbox must not share code with the client it tests (issue 4)."""

from __future__ import annotations

import ast
from pathlib import Path

import connector.sandbox

SANDBOX_DIR = Path(connector.sandbox.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_sandbox_never_imports_the_keap_client() -> None:
    files = sorted(SANDBOX_DIR.glob("*.py"))
    assert files
    for path in files:
        connector_imports = {m for m in imported_modules(path) if m.startswith("connector")}
        allowed = {
            m for m in connector_imports if m.startswith(("connector.sandbox", "connector.errors"))
        }
        assert connector_imports == allowed, f"{path.name} imports {connector_imports - allowed}"
