"""``policy check`` / ``policy show`` on the DESIGN 7a keys: incidents, expire, notify."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from connector.bounces import BounceType
from connector.policy import check_policy_file, effective_rules, parse_policy, policy_summary

RULE = '[[rule]]\nbounce = "hard_bounce"\naction = "opt_out"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[[rule]]\nbounce = "hard_bounce"\nnote = true\nexpire = "9d"\n',
            "rule 1 (hard_bounce): expire: only an opt_out or promote rule can expire "
            "(this rule's action is 'none'); allowed actions with expire: 'opt_out', 'promote'",
        ),
        (RULE + 'expire = "soon"\n', "rule 1 (hard_bounce): expire: 'soon' is not a duration"),
        (RULE + 'notify = "yes"\n', "rule 1 (hard_bounce): notify: expected true or false"),
        ("[incidents]\nthreshold = 1\n", "incidents.threshold: 1 is out of range; use 2 to"),
        ('[incidents]\nthreshold = "5"\n', "incidents.threshold: expected a whole number"),
        ("[incidents]\nlimit = 5\n", "allowed keys here: bounce, threshold, within"),
        ('[incidents]\nbounce = "nope"\n', "incidents.bounce: unknown bounce type 'nope'"),
        ('[incidents]\nwithin = "0s"\n', "incidents.within:"),
    ],
)
def test_check_names_the_table_field_and_allowed_values(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    problems = check_policy_file(path)
    assert any(problem in line for line in problems), problems


def test_show_and_summary_cover_incidents_expire_and_notify() -> None:
    policy = parse_policy(
        RULE + 'expire = "90d"\nnotify = true\n[incidents]\nthreshold = 5\nwithin = "2h"\n', "p"
    )
    assert policy.incidents is not None
    assert policy.incidents.threshold == 5
    assert policy.incidents.within == timedelta(hours=2)
    assert BounceType.MAIL_BLOCK_SPAM_DETECTED in policy.incidents.bounce_types
    (row,) = effective_rules(policy)
    assert (row["expire"], row["notify"]) == ("90d", "yes")
    summary = policy_summary(policy)
    assert "re-opt-in (expire): rule 1 (hard_bounce) after 90d" in summary
    assert "alert on each match (notify): rule 1 (hard_bounce)" in summary
    assert "incidents: 5 or more of mail_block_general" in summary
    assert "within 2h" in summary
    assert "incidents: off" in policy_summary(parse_policy(RULE, "p"))
