"""``connector triggers``: the Keap setup sheet, as a table and as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.bounces import BounceType
from tests.cli.runner import run

SECRET = "s3cr3t/key+with=odd&chars-0123456789"
POLICY = """
[[rule]]
bounce = "hard_bounce"
when = "exactly 1"
add_tags = ["First"]

[[rule]]
bounce = "hard_bounce"
when = "more than 2"
action = "opt_out"

[[rule]]
bounce = ["mail_block_general", "soft_bounce_general"]
when = "always"
add_tags = ["Block"]

[[rule]]
bounce = "soft_bounce_general"
when = "at least 3"
add_tags = ["Soft"]
"""


@pytest.fixture(autouse=True)
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    monkeypatch.setenv("CONNECTOR_POLICY_FILE", str(policy))
    monkeypatch.setenv("CONNECTOR_WEBHOOK_SECRET", SECRET)


def _csv(*args: str) -> tuple[dict[str, dict[str, str]], str]:
    code, out, err = run("triggers", "--format", "csv", *args)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    return {row["slug"]: row for row in rows}, err


def test_one_row_per_bounce_type_with_keaps_label_and_pairs() -> None:
    rows, _ = _csv("--public-url", "https://bounces.example.com/")
    assert list(rows) == [t.value for t in BounceType]
    hard = rows["hard_bounce"]
    assert hard["keap_bounce_type"] == "Hard Bounce"
    assert hard["name_value_pairs"] == "contactId = ~Contact.Id~; Email = ~Contact.Email~"
    assert "When an email bounces" in hard["keap_menu"]
    assert (
        hard["http_post_url"]
        == "https://bounces.example.com/keap/bounce/hard_bounce?key=s3cr********"
    )
    assert SECRET not in "".join(str(r) for r in rows.values())


def test_count_conditions_follow_the_policy() -> None:
    rows, _ = _csv("--public-url", "https://bounces.example.com")
    assert (rows["hard_bounce"]["count_condition"], rows["hard_bounce"]["rules"]) == (
        "exactly 1; more than 2",
        "1, 2",
    )
    assert rows["soft_bounce_general"]["count_condition"] == "any count"
    assert rows["soft_bounce_general"]["rules"] == "3, 4"
    assert rows["mail_block_general"]["count_condition"] == "any count"
    assert rows["auto_reply"]["count_condition"].startswith("any count (optional: no rule")
    assert rows["auto_reply"]["rules"] == "none"


def test_show_key_puts_the_encoded_key_in_the_url() -> None:
    rows, _ = _csv("--public-url", "https://bounces.example.com", "--show-key")
    url = rows["general_bounce"]["http_post_url"]
    assert url == (
        "https://bounces.example.com/keap/bounce/general_bounce"
        "?key=s3cr3t%2Fkey%2Bwith%3Dodd%26chars-0123456789"
    )
    assert parse_qs(urlsplit(url).query) == {"key": [SECRET]}


def test_without_a_public_url_a_placeholder_and_a_warning() -> None:
    rows, err = _csv()
    assert rows["hard_bounce"]["http_post_url"].startswith(
        "https://YOUR-PUBLIC-HOST/keap/bounce/hard_bounce?key="
    )
    assert "warning: no --public-url given" in err


def test_warnings_for_http_and_odd_ports_and_a_missing_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONNECTOR_WEBHOOK_SECRET")
    rows, err = _csv("--public-url", "http://bounces.example.com:8080")
    assert "sends the key in clear text" in err
    assert "only calls ports 80 and 443, not 8080" in err
    assert "CONNECTOR_WEBHOOK_SECRET is not set" in err
    assert rows["hard_bounce"]["http_post_url"].endswith("?key=NOT-SET(CONNECTOR_WEBHOOK_SECRET)")


@pytest.mark.parametrize("bad", ["ftp://x.example", "bounces.example.com", "https://x?y=1"])
def test_a_bad_public_url_is_one_line(bad: str) -> None:
    code, _, err = run("triggers", "--public-url", bad)
    assert code == 1
    assert "is not an http(s) URL" in err
    assert len(err.strip().splitlines()) == 1


def test_the_table_has_every_type_and_whole_urls() -> None:
    code, out, err = run("triggers", "--public-url", "https://bounces.example.com")
    assert code == 0, err
    assert out.startswith("In Keap: Marketing > Settings > Template Settings")
    for bounce_type in BounceType:
        assert bounce_type.label in out
        assert (
            f"https://bounces.example.com/keap/bounce/{bounce_type.value}?key=s3cr********" in out
        )
    assert SECRET not in out
    assert "contactId = ~Contact.Id~" in out
