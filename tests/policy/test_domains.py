"""``domains`` / ``exclude_domains`` (DESIGN 7a): which addresses a rule applies to."""

from __future__ import annotations

import pytest

from connector.errors import PolicyError
from connector.policy import Action, BounceEvent, parse_policy
from connector.policy.model import address_domain
from tests.policy.builders import HB, T0, plan_for, policy_of, rules_toml


def at(email: str) -> BounceEvent:
    return BounceEvent("42", email, HB, T0)


@pytest.mark.parametrize(
    ("domains", "exclude", "email", "applies"),
    [
        (["gmail.com"], [], "a@gmail.com", True),
        (["gmail.com"], [], "a@GMAIL.COM", True),
        (["gmail.com"], [], "a@mail.gmail.com", False),
        (["*.edu"], [], "a@cs.mit.edu", True),
        (["*.edu"], [], "a@edu", False),
        (["*"], ["mycompany.com"], "boss@mycompany.com", False),
        (["*"], ["mycompany.com"], "a@other.com", True),
        ([], ["*.mycompany.com"], "a@eu.mycompany.com", False),
        (["münchen.de"], [], "jo@xn--mnchen-3ya.de", True),
        (["xn--mnchen-3ya.de"], [], "jo@MÜNCHEN.de", True),
    ],
)
def test_a_rule_applies_only_to_its_domains(
    domains: list[str], exclude: list[str], email: str, applies: bool
) -> None:
    rule: dict[str, object] = {"bounce": "hard_bounce", "action": "opt_out"}
    if domains:
        rule["domains"] = domains
    if exclude:
        rule["exclude_domains"] = exclude
    plan = plan_for(policy_of(rule), ev=at(email))
    assert (plan.action is Action.OPT_OUT) is applies


@pytest.mark.parametrize("bad", ["", "not a domain", "a@b.com", "*x.com", "-x.com", "x..com"])
def test_a_bad_domain_is_named_in_the_error(bad: str) -> None:
    with pytest.raises(PolicyError, match=r"rule 1.*domains.*not a domain"):
        parse_policy(rules_toml({"bounce": "hard_bounce", "domains": [bad], "note": True}), "t")


def test_the_ascii_form_of_an_international_domain() -> None:
    assert address_domain("jo@München.DE.") == "xn--mnchen-3ya.de"


def test_promote_is_between_opt_out_and_blank() -> None:
    assert Action.OPT_OUT.severity < Action.PROMOTE.severity < Action.BLANK_EMAIL.severity
    policy = policy_of(
        {"bounce": "hard_bounce", "action": "opt_out"},
        {"bounce": "hard_bounce", "action": "promote"},
    )
    assert plan_for(policy).action is Action.PROMOTE


def test_protect_tags_are_read_and_shown() -> None:
    text = '[settings]\nprotect_tags = ["VIP", " Do Not Auto-Clean "]\n' + rules_toml(
        {"bounce": "hard_bounce", "action": "opt_out"}
    )
    policy = parse_policy(text, "t")
    assert policy.settings.protect_tags == ("VIP", "Do Not Auto-Clean")
    with pytest.raises(PolicyError, match="protect_tags"):
        parse_policy('[settings]\nprotect_tags = [""]\n', "t")
