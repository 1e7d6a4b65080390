"""E-mail and IP scoring (appliance/pii/addresses.py)."""

from __future__ import annotations

import pytest
from visionality.pii.addresses import email_score, ip_score
from visionality.pii.presidio_validators import PresidioValidators


@pytest.fixture(scope="module")
def validators() -> PresidioValidators:
    return PresidioValidators()


def _email(text: str, value: str, v: PresidioValidators) -> float:
    s = text.index(value)
    return email_score(text, s, s + len(value), v)


def test_email_needs_a_public_suffix(validators: PresidioValidators) -> None:
    assert _email("to ann@firm.co.uk.", "ann@firm.co.uk", validators) == 1.0
    assert _email("logo@2x.png", "logo@2x.png", validators) == 0.0
    assert _email("git@github.com:org/repo.git", "git@github.com", validators) == 0.0


def _ip(text: str, value: str) -> float:
    s = text.index(value)
    return ip_score(text, s, s + len(value))


@pytest.mark.parametrize(
    ("value", "score"),
    [
        ("8.8.8.8", 0.95),
        ("2001:4860:4860::8888", 0.95),
        ("c76a:bf43:6fa8:4dca:ac0a:e4e3:f729:b4c8", 0.95),
        ("10.1.2.3", 0.4),
        ("192.168.0.10", 0.4),
        ("fd12:3456::1", 0.4),
        ("127.0.0.1", 0.0),
        ("::1", 0.0),
        ("fe80::1", 0.0),
        ("192.0.2.7", 0.0),
        ("2001:db8::1", 0.0),
        ("224.0.0.1", 0.0),
        ("256.1.1.1", 0.0),
        ("10:23:45", 0.0),
        ("Add::add", 0.0),
    ],
)
def test_ip_policy(value: str, score: float) -> None:
    assert _ip(f"host {value} up", value) == score


def test_version_numbers_are_not_addresses() -> None:
    assert _ip("version 4.2.10.1 out", "4.2.10.1") == 0.0
    assert _ip("v4.2.10.1", "4.2.10.1") == 0.0


def test_version_specifiers_are_not_addresses() -> None:
    for text in ("pip install torch==2.1.0.1", "numpy>=1.26.4.2", "pkg~=3.1.4.1"):
        start = text.index("=") + 1
        assert ip_score(text, start, len(text)) == 0.0
    assert ip_score("HOST=8.8.8.8", 5, 12) == 0.95  # an assignment, not a version
