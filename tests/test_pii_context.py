"""Context words (appliance/pii/context.py)."""

from __future__ import annotations

from visionality.pii.context import ContextWords

SSN = ContextWords(["ssn", "social security"])
PHONE = ContextWords(["phone", "cell"])


def test_whole_words_with_underscores_and_dashes_as_spaces() -> None:
    for text in ("SSN: 123", '"social_security_number": 123', "Social-Security 123"):
        assert SSN.found_before(text, text.index("123"))
    for text in ("classn 123", "cellular 123", "headphones 123"):
        assert not PHONE.found_before(text, text.index("123"))
        assert not SSN.found_before(text, text.index("123"))


def test_window_is_bounded() -> None:
    text = "ssn " + "x" * 200 + " 123"
    assert not SSN.found_before(text, text.index("123"))


def test_table_header_two_lines_up_counts() -> None:
    text = "| name | ssn |\n|---|---|\n| Ann | 123 |"
    assert SSN.found_before(text, text.index("123"))
    text = "name,phone\n" + ("Bob," + "x" * 40 + "\n") * 3 + "Ann,123"
    assert not PHONE.found_before(text, text.index("123"))  # header is four lines up: not this value's
