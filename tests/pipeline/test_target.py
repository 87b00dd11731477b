"""DESIGN 1a, pure: which address an event acts on, and the evidence recorded for it."""

from __future__ import annotations

import pytest

from connector.keap.models import Contact, EmailAddress
from connector.pipeline.target import Evidence, pick, pinned


def contact(*addresses: tuple[str, str, str]) -> Contact:
    return Contact(
        id="1",
        email_addresses=[
            EmailAddress(email=e, field=f, email_opt_status=s) for e, f, s in addresses
        ],
    )


THREE = contact(
    ("a@x.com", "EMAIL1", "SINGLE_OPT_IN"),
    ("b@x.com", "EMAIL2", "SINGLE_OPT_IN"),
    ("c@x.com", "EMAIL3", "HARD_BOUNCE"),
)


@pytest.mark.parametrize(
    ("posted", "email", "field", "evidence"),
    [
        ("b@x.com", "b@x.com", "EMAIL2", Evidence.POSTED),
        ("B@X.COM", "b@x.com", "EMAIL2", Evidence.POSTED),
        ("other@x.com", "other@x.com", "EMAIL_FIELD_UNSPECIFIED", Evidence.NOT_ON_CONTACT),
        (None, "c@x.com", "EMAIL3", Evidence.BOUNCE_STATUS),
    ],
)
def test_the_target_and_its_evidence(
    posted: str | None, email: str, field: str, evidence: Evidence
) -> None:
    target = pick(THREE, posted)
    assert target is not None
    assert (target.address.email, target.address.field, target.evidence) == (
        email,
        field,
        evidence,
    )
    assert target.on_contact is (evidence is not Evidence.NOT_ON_CONTACT)


def test_a_posted_address_not_on_the_contact_is_never_the_contacts_own() -> None:
    target = pick(THREE, "nobody@nowhere.example")
    assert target is not None
    assert not target.on_contact
    assert target.reason == "posted address not on the contact"


def test_sharp_s_is_not_ss() -> None:
    """``casefold()`` would make these equal; Keap's addresses are compared with ``lower()``."""
    target = pick(contact(("STRASSE@d.example", "EMAIL1", "SINGLE_OPT_IN")), "straße@d.example")
    assert target is not None
    assert not target.on_contact
    same = pick(contact(("STRASSE@d.example", "EMAIL1", "SINGLE_OPT_IN")), "strasse@d.example")
    assert same is not None
    assert same.on_contact


def test_none_posted_falls_back_to_email1_and_says_so() -> None:
    both = contact(("a@x.com", "EMAIL1", "CONFIRMED"), ("b@x.com", "EMAIL2", "CONFIRMED"))
    target = pick(both, None)
    assert target is not None
    assert (target.address.email, target.evidence) == ("a@x.com", Evidence.EMAIL1)
    assert target.reason == "picked: EMAIL1 (no address posted)"


def test_two_bounced_addresses_are_no_evidence_for_either() -> None:
    two = contact(("a@x.com", "EMAIL1", "BOUNCE"), ("b@x.com", "EMAIL2", "HARD_BOUNCE"))
    target = pick(two, None)
    assert target is not None
    assert target.evidence is Evidence.EMAIL1


def test_no_address_at_all_is_no_target() -> None:
    assert pick(contact(), None) is None
    only = pick(contact(("z@x.com", "EMAIL2", "CONFIRMED")), None)
    assert only is not None
    assert only.evidence is Evidence.ONLY_ADDRESS


def test_a_pinned_address_survives_its_own_removal() -> None:
    target = pinned(contact(("a@x.com", "EMAIL1", "CONFIRMED")), "gone@x.com", "EMAIL2")
    assert (target.address.email, target.address.field) == ("gone@x.com", "EMAIL2")
