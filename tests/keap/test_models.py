"""Models keep whatever Keap sends that we can use, and never fail on what is new."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from connector.keap.models import (
    BOUNCE_STATUSES,
    Contact,
    EmailAddressStatus,
    EmailField,
    EmailStatus,
    Note,
    Page,
    Tag,
    Task,
    User,
    known_status,
)


@given(status=st.text(min_size=1, max_size=40))
def test_any_status_string_is_kept_verbatim(status: str) -> None:
    contact = Contact.model_validate(
        {"id": "1", "email_addresses": [{"email": "a@x.com", "email_opt_status": status}]}
    )
    reading = EmailAddressStatus.model_validate({"email": "a@x.com", "status": status})

    assert contact.email_addresses[0].email_opt_status == status
    assert reading.status == status


def test_known_statuses_compare_as_enums_and_unknown_ones_as_none() -> None:
    reading = EmailAddressStatus.model_validate({"email": "a@x.com", "status": "HARD_BOUNCE"})
    novel = EmailAddressStatus.model_validate({"email": "a@x.com", "status": "SUPER_BOUNCE"})

    assert reading.status == EmailStatus.HARD_BOUNCE
    assert reading.known_status is EmailStatus.HARD_BOUNCE
    assert reading.status in BOUNCE_STATUSES
    assert novel.known_status is None
    assert known_status(None) is None


def test_unknown_email_field_is_kept() -> None:
    contact = Contact.model_validate(
        {"id": "1", "email_addresses": [{"email": "a@x.com", "field": "EMAIL4"}]}
    )

    assert contact.email_addresses[0].field == "EMAIL4"
    assert contact.in_field(EmailField.EMAIL1) is None


def test_numeric_ids_become_strings_and_extra_fields_are_ignored() -> None:
    contact = Contact.model_validate(
        {"id": 1001, "tag_ids": [1, 2], "owner_id": 9, "brand_new": {"x": 1}}
    )
    tag = Tag.model_validate({"id": 7, "name": "VIP", "category": {"id": 3}})

    assert contact.id == "1001"
    assert contact.tag_ids == ["1", "2"]
    assert not hasattr(contact, "brand_new")
    assert tag.category_id == "3"


def test_unparseable_times_become_none_instead_of_failing() -> None:
    reading = EmailAddressStatus.model_validate(
        {
            "email": "a@x.com",
            "status": "BOUNCE",
            "create_time": "not a time",
            "last_open_time": "2026-02-03T04:05:06.789Z",
            "last_click_time": "",
        }
    )

    assert reading.create_time is None
    assert reading.last_click_time is None
    assert reading.last_open_time == datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


def test_last_engagement_is_the_latest_open_or_click() -> None:
    reading = EmailAddressStatus.model_validate(
        {
            "email": "a@x.com",
            "status": "BOUNCE",
            "last_open_time": "2026-01-01T00:00:00Z",
            "last_click_time": "2026-01-05T00:00:00Z",
            "last_sent_time": "2026-02-01T00:00:00Z",
        }
    )
    silent = EmailAddressStatus.model_validate({"email": "a@x.com", "status": "BOUNCE"})

    assert reading.last_engagement_time == datetime(2026, 1, 5, tzinfo=UTC)
    assert silent.last_engagement_time is None


def test_contact_finds_addresses_case_insensitively() -> None:
    contact = Contact.model_validate(
        {
            "id": "1",
            "email_addresses": [
                {"email": "Jane@Example.com", "field": "EMAIL1"},
                {"email": "other@example.com", "field": "EMAIL2"},
            ],
        }
    )

    found = contact.address(" jane@example.COM ")
    assert found is not None
    assert found.field == EmailField.EMAIL1
    assert contact.address("nobody@example.com") is None
    second = contact.in_field("EMAIL2")
    assert second is not None
    assert second.email == "other@example.com"


def test_a_contact_without_addresses_is_valid() -> None:
    contact = Contact.model_validate({"id": "5"})

    assert contact.email_addresses == []
    assert contact.address("a@x.com") is None


def test_note_task_and_user_parse_keap_examples() -> None:
    note = Note.model_validate({"id": 12345, "contact_id": 1001, "title": "Sales Call"})
    task = Task.model_validate(
        {"id": 123, "priority": "URGENT_NEW", "due_time": "2024-03-18T17:00:00Z"}
    )
    user = User.model_validate({"id": 123, "status": "SUSPENDED", "admin": True})

    assert (note.id, note.contact_id) == ("12345", "1001")
    assert task.priority == "URGENT_NEW"
    assert task.due_time == datetime(2024, 3, 18, 17, tzinfo=UTC)
    assert user.status == "SUSPENDED"


def test_page_reports_its_end() -> None:
    assert Page(items=[], page_token=None, next_page_token="").is_last
    assert not Page(items=[1], page_token=None, next_page_token="n").is_last
