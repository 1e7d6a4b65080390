"""Allow-list matching (appliance/pii/allow_list.py)."""

from __future__ import annotations

from visionality.pii import DEFAULT_ALLOW_LIST
from visionality.pii.allow_list import AllowList, entry_scope
from visionality.pii.policy import DEFAULT_ALLOW_SCOPES

DEFAULT = AllowList(DEFAULT_ALLOW_LIST)


def test_test_cards_in_any_spelling() -> None:
    for spelling in ("4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"):
        assert DEFAULT.allows("CREDIT_CARD", spelling)
    assert not DEFAULT.allows("CREDIT_CARD", "4111 1111 1111 1129")


def test_example_domains_and_their_subdomains() -> None:
    assert DEFAULT.allows("EMAIL_ADDRESS", "Ann@Example.COM")
    assert DEFAULT.allows("EMAIL_ADDRESS", "ann@mail.example.org")
    assert not DEFAULT.allows("EMAIL_ADDRESS", "ann@example.com.evil.io")
    assert not DEFAULT.allows("EMAIL_ADDRESS", "ann@notexample.com")


def test_fiction_phone_numbers_and_aws_doc_key() -> None:
    assert DEFAULT.allows("PHONE_NUMBER", "(212) 555-0123")
    assert DEFAULT.allows("PHONE_NUMBER", "+1 212 555 0199")
    assert not DEFAULT.allows("PHONE_NUMBER", "(212) 555-0200")
    assert DEFAULT.allows("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE")
    assert not DEFAULT.allows("API_KEY", "AKIAIOSFODNN7EXAMPLE-other")


def test_email_entries_only_apply_to_email_findings() -> None:
    allow = AllowList(["*@corp.test", "12*"])
    assert allow.allows("EMAIL_ADDRESS", "x@corp.test")
    assert not allow.allows("EMAIL_ADDRESS", "12@other.test")
    assert allow.allows("PHONE_NUMBER", "12 345")
    assert not AllowList([]).allows("PHONE_NUMBER", "12")


def test_attack_fiction_phone_glob_allows_other_types() -> None:
    """The old "*55501??" entry applied to every type: a Luhn-valid card and a London number passed."""
    scoped = AllowList(DEFAULT_ALLOW_LIST, DEFAULT_ALLOW_SCOPES)
    assert not scoped.allows("CREDIT_CARD", "4539148815550123")
    assert not scoped.allows("PHONE_NUMBER", "+44 20 7555 0123")
    assert not scoped.allows("PHONE_NUMBER", "+44 7700 555 0142")
    assert scoped.allows("PHONE_NUMBER", "(212) 555-0123") and scoped.allows("PHONE_NUMBER", "1-212-555-0199")
    assert scoped.allows("CREDIT_CARD", "4111-1111-1111-1111")
    assert not scoped.allows("PHONE_NUMBER", "4111 1111 1111 1111")
    assert not scoped.allows("API_KEY", "AKIAIOSFODNN7EXAMPLE")


def test_type_prefix_scopes_an_entry() -> None:
    allow = AllowList(["PHONE_NUMBER:+44 20 7946 0958", "2001:db8::1"])
    assert allow.allows("PHONE_NUMBER", "+44 20 7946 0958")
    assert not allow.allows("UK_NHS", "+44 20 7946 0958")
    assert allow.allows("IP_ADDRESS", "2001:db8::1")  # "2001" is no detector name: an unscoped value
    assert entry_scope("CREDIT_CARD:4111*", {}) == (frozenset({"CREDIT_CARD"}), "4111*")
