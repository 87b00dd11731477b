"""``connector policy``: init, check, show."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.runner import run


def test_policy_init_check_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_POLICY_FILE", str(tmp_path / "policy.toml"))
    code, out, _ = run("policy", "init")
    assert code == 0
    assert (tmp_path / "policy.toml").exists()
    code, _, err = run("policy", "init")
    assert code == 1
    assert "--force" in err
    assert run("policy", "init", "--force")[0] == 0
    code, out, _ = run("policy", "check")
    assert code == 0
    assert "opt_out" in out
    code, out, _ = run("policy", "show")
    assert code == 0
    assert "Third Strike" in out


def test_policy_check_reports_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rule]]\nbounce = "nope"\nadd_tags = ["x"]\n\n'
        '[[rule]]\nbounce = "hard_bounce"\nwhen = "sometimes"\nadd_tags = ["y"]\n'
    )
    code, _, err = run("policy", "check", str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) >= 2
    assert any("rule 1" in line and "nope" in line for line in lines)
    assert any("rule 2" in line and "when" in line for line in lines)
