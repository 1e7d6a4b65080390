"""The candidate pre-pass (appliance/pii/prepass.py): kinds, boundaries, chunking, linear time."""

from __future__ import annotations

import time

import pytest
from visionality.pii.prepass import MAX_CANDIDATE_CHARS, iter_candidates


def kinds(text: str) -> list[tuple[str, str]]:
    return [(k, text[s:e]) for k, s, e in iter_candidates(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-abcdefghij0123456789xyz ok", ("secret", "sk-abcdefghij0123456789xyz")),
        ("k=AIzaSyA1234567890abcdefghijklmnopqrstuv!", ("secret", "AIzaSyA1234567890abcdefghijklmnopqrstuv")),
        ("id AKIAABCDEFGHIJKLMNOP.", ("aws", "AKIAABCDEFGHIJKLMNOP")),
        ("IBAN GB82 WEST 1234 5698 7654 32.", ("iban", "GB82 WEST 1234 5698 7654 32")),
        ("NI AB 12 34 56 C", ("nino", "AB 12 34 56 C")),
        ("mail <ann.lee+x@mail.example.co.uk>", ("email", "ann.lee+x@mail.example.co.uk")),
        ("host 2001:4860:4860::8888 up", ("ipv6", "2001:4860:4860::8888")),
        ("from 8.8.8.8, then", ("ipv4", "8.8.8.8")),
        ("call +44 20 7946 0958 now", ("num", "+44 20 7946 0958")),
        ("x -----BEGIN RSA PRIVATE KEY----- y", ("pem", "-----BEGIN RSA PRIVATE KEY-----")),
    ],
)
def test_each_kind_is_found(text: str, expected: tuple[str, str]) -> None:
    assert expected in kinds(text)


def test_prefixes_are_case_sensitive_and_need_a_boundary() -> None:
    assert kinds("SK-ABCDEFGHIJ0123456789 XOXB-1234567890-abc") == []
    assert kinds("task-abcdefghij0123456789xyz") == []
    assert kinds("akiaabcdefghijklmnop") == []


def test_aws_secret_only_after_its_name() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234567890"
    assert kinds(f"aws_secret_access_key = {secret}\n") == [("awssecret", secret)]
    assert kinds(f"SecretAccessKey: '{secret}'") == [("awssecret", secret)]
    assert not [k for k, _ in kinds(f"blob {secret}") if k == "awssecret"]


def test_iso_dates_and_mid_token_digits_are_not_candidates() -> None:
    assert kinds("at 2024-01-15T10:23:45.123Z ok") == []
    assert kinds("sha a1b2c3d4e5f60718293a uuid 3f2a9c10-1b2c-4d5e-8f90-a1b2c3d4e5f6") == []


def test_candidate_across_a_chunk_edge_is_found_whole() -> None:
    pad = "x " * (65_536 // 2 - 5)
    text = pad + "card 4111 1111 1111 1111 end"
    assert ("num", "4111 1111 1111 1111") in kinds(text)
    assert MAX_CANDIDATE_CHARS > 4096


def test_deadline_hook_runs_per_chunk() -> None:
    calls = []
    list(iter_candidates("a" * 200_000, lambda: calls.append(1)))
    assert len(calls) == 5 * 4  # five trigger regexes, four 64 KB chunks each


@pytest.mark.parametrize("unit", ["a", "1", "@", "-", "1.", "a@", ":", "sk-", "AB12 ", "ey", "(+1", "1 ", "A", "/+"])
def test_adversarial_input_stays_linear(unit: str) -> None:
    """Bounded quantifiers only: 200 KB of any repeated unit scans in well under a second."""
    text = unit * (200_000 // len(unit))
    t0 = time.perf_counter()
    list(iter_candidates(text))
    assert time.perf_counter() - t0 < 2.0


def test_attack_label_colon_blinds_numeric_candidates() -> None:
    assert ("num", "536-22-1234") in kinds("SSN:536-22-1234")
    assert ("num", "5425233430109903") in kinds('{"card":5425233430109903}')
    assert ("num", "+442079460958") in kinds("tel:+442079460958")
    assert not [k for k, _ in kinds("at 10:23:45:99887766") if k == "num"]  # after a digit and ":": a clock


def test_attack_negative_sign_hides_digits() -> None:
    assert ("num", "5425233430109903") in kinds("x -5425233430109903")
    assert ("num", "5425233430109903") in kinds("-5425233430109903")
    assert kinds("ids 100-20003000 ok") == [("num", "100-20003000")]  # "-" after a digit: a range, not a sign


def test_attack_padding_splits_a_digit_run() -> None:
    """Runs used to be cut every 50-60 characters, so "7 7 7 ... 5425 2334 3010 9903" split the card."""
    text = "ids " + "7 " * 40 + "5425 2334 3010 9903 end"
    ((kind, run),) = kinds(text)
    assert kind == "num" and run.endswith("5425 2334 3010 9903")


@pytest.mark.parametrize(
    "text",
    [
        "AWS_SECRET=wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234567890",
        "aws-secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234567890",
        "secret-access-key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234567890",
    ],
)
def test_attack_aws_secret_under_another_spelling_of_its_name(text: str) -> None:
    assert ("awssecret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234567890") in kinds(text)


def test_attack_stripe_test_key_is_a_candidate() -> None:
    assert ("secret", "sk_test_51HqLyjWDarjtT1zdp7dcXm2Ab") in kinds("k sk_test_51HqLyjWDarjtT1zdp7dcXm2Ab")
