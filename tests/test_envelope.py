"""Envelopes: the official PASETO v4 vectors, then Visionality's claims and the attacks on them.

``tests/vectors/paseto/v4.json`` is verbatim from paseto-standard/test-vectors ``v4.json`` @ d26d2dd
(the revision that carries the 4-F-* failure cases and string payloads).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from visionality.envelope import (
    MAX_TOKEN_CHARS,
    Budget,
    Claims,
    EnvelopeRejected,
    EnvelopeSigner,
    EnvelopeVerifier,
    format_time,
    parse_time,
    sign_v4_public,
    verify_v4_public,
)
from visionality.errors import ConfigError, EnvelopeError
from visionality.paserk import b64url_decode, b64url_encode, k4_pid

V4 = json.loads((Path(__file__).parent / "vectors" / "paseto" / "v4.json").read_text())["tests"]
PUBLIC_OK = [c for c in V4 if c["token"].startswith("v4.public.") and not c["expect-fail"]]
EXPECT_FAIL = [c for c in V4 if c["expect-fail"]]
LOCAL = [c for c in V4 if c["token"].startswith("v4.local.") and not c["expect-fail"]]
# The Ed25519 key of the 4-S-* vectors; used to show the failure vectors fail for a real key too.
VECTOR_PK = bytes.fromhex("1eb9dbbbbc047c03fd70604e0071f0987e16b28b757225c11f00415d0e20b1a2")

DEPLOYMENT = "acme-prod"
NOW = datetime(2026, 12, 3, 19, 0, 0, tzinfo=UTC)


def test_vector_file_has_every_v4_case() -> None:
    names = [c["name"] for c in V4]
    assert names == [f"4-E-{i}" for i in range(1, 10)] + [f"4-S-{i}" for i in range(1, 4)] + [
        f"4-F-{i}" for i in range(1, 5)
    ]
    assert len(PUBLIC_OK) == 3 and len(EXPECT_FAIL) == 4 and len(LOCAL) == 9


# ---------------------------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", PUBLIC_OK, ids=[c["name"] for c in PUBLIC_OK])
def test_official_v4_public_vector_verifies(case: dict[str, Any]) -> None:
    payload, footer = verify_v4_public(
        bytes.fromhex(case["public-key"]), case["token"], case["implicit-assertion"].encode()
    )
    assert payload == case["payload"].encode()
    assert footer == case["footer"].encode()


@pytest.mark.parametrize("case", PUBLIC_OK, ids=[c["name"] for c in PUBLIC_OK])
def test_official_v4_public_vector_signs_identically(case: dict[str, Any]) -> None:
    # Ed25519 is deterministic (RFC 8032), so signing must reproduce the vector byte for byte.
    secret = bytes.fromhex(case["secret-key"])
    assert secret[:32] == bytes.fromhex(case["secret-key-seed"])
    token = sign_v4_public(
        secret, case["payload"].encode(), case["footer"].encode(), case["implicit-assertion"].encode()
    )
    assert token == case["token"]


@pytest.mark.parametrize("case", PUBLIC_OK, ids=[c["name"] for c in PUBLIC_OK])
def test_official_v4_public_vector_fails_with_another_implicit_assertion(case: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeRejected) as info:
        verify_v4_public(bytes.fromhex(case["public-key"]), case["token"], b"another-deployment")
    assert info.value.code == "bad_signature"


@pytest.mark.parametrize("case", EXPECT_FAIL, ids=[c["name"] for c in EXPECT_FAIL])
def test_official_v4_failure_vector_is_rejected(case: dict[str, Any]) -> None:
    pk = bytes.fromhex(case["public-key"]) if "public-key" in case else VECTOR_PK
    with pytest.raises(EnvelopeRejected) as info:
        verify_v4_public(pk, case["token"], case["implicit-assertion"].encode())
    # 4-F-2 is a v4.public token with a local-key "signature"; the others are other purposes/versions.
    assert info.value.code == ("bad_signature" if case["name"] == "4-F-2" else "not_v4_public")


@pytest.mark.parametrize("case", LOCAL, ids=[c["name"] for c in LOCAL])
def test_official_v4_local_vector_is_refused_by_the_public_verifier(case: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeRejected, match="got a v4.local token") as info:
        verify_v4_public(VECTOR_PK, case["token"], case["implicit-assertion"].encode())
    assert info.value.code == "not_v4_public"


def test_low_level_key_sizes_are_config_errors() -> None:
    case = PUBLIC_OK[0]
    with pytest.raises(ConfigError, match="expected 32 bytes, got 31"):
        verify_v4_public(VECTOR_PK[:31], case["token"])
    with pytest.raises(ConfigError, match="expected 64 bytes"):
        sign_v4_public(bytes(32), b"{}")
    spliced = bytes.fromhex(case["secret-key"])[:32] + bytes(32)
    with pytest.raises(ConfigError, match="public half does not match"):
        sign_v4_public(spliced, b"{}")


def test_empty_footer_is_sent_without_a_dot() -> None:
    case = PUBLIC_OK[0]  # 4-S-1 has no footer
    assert "." not in case["token"].removeprefix("v4.public.")
    with pytest.raises(EnvelopeRejected, match="empty footer"):
        verify_v4_public(VECTOR_PK, case["token"] + ".")


# ---------------------------------------------------------------------------------------------- claims


def _claims(**changes: Any) -> Claims:
    base = Claims(
        iss="https://visionality.acme.example",
        sub="00u1a2b3c4d5e6f7g8h9",
        email="ada.lovelace@acme.example",
        jti="key_01JEXAMPLE7Q8R9S0T1U2V3W4",
        iat=NOW - timedelta(hours=1),
        exp=NOW + timedelta(days=30),
        nbf=NOW - timedelta(hours=1),
        project="checkout-redesign",
        task="PROJ-128",
        memo="Sprint 14: redesign of the checkout flow",
        url="https://jira.acme.example/browse/PROJ-128",
        budget=Budget(Decimal("25.00"), "month"),
        role="user",
        cost_center="CC-4410",
        gl_code="6120-AI",
    )
    return replace(base, **changes)


def test_claims_round_trip_through_json() -> None:
    claims = _claims()
    payload = claims.to_payload()
    assert payload["iat"] == "2026-12-03T18:00:00Z"
    assert payload["budget"] == {"amount": "25.00", "period": "month"}
    assert Claims.from_payload(json.loads(json.dumps(payload))) == claims


def test_claims_omit_absent_optionals_and_default_role() -> None:
    claims = _claims(exp=None, nbf=None, project=None, task=None, memo=None, url=None, budget=None)
    claims = replace(claims, cost_center=None, gl_code=None)
    payload = claims.to_payload()
    assert set(payload) == {"iss", "sub", "email", "jti", "iat", "role"}
    del payload["role"]
    assert Claims.from_payload(payload) == claims


def test_times_are_emitted_in_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 12, 3, 21, 0, tzinfo=plus_two)) == "2026-12-03T19:00:00Z"
    assert format_time(datetime(2026, 12, 3, 19, 0, 0, 120000, tzinfo=UTC)) == "2026-12-03T19:00:00.120000Z"
    with pytest.raises(EnvelopeError, match="naive"):
        format_time(datetime(2026, 12, 3, 19, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T19:00:00Z", datetime(2026, 12, 3, 19, tzinfo=UTC)),
        ("2026-12-03t19:00:00z", datetime(2026, 12, 3, 19, tzinfo=UTC)),
        ("2026-12-03T21:00:00+02:00", datetime(2026, 12, 3, 19, tzinfo=UTC)),
        ("2026-12-03T14:30:00-04:30", datetime(2026, 12, 3, 19, tzinfo=UTC)),
        ("2022-01-01T00:00:00+00:00", datetime(2022, 1, 1, tzinfo=UTC)),  # the form the PASETO vectors use
        ("2026-12-03T19:00:00.123456789Z", datetime(2026, 12, 3, 19, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_parse(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03T19:00:00",  # no offset: would silently mean local time
        "2026-12-03",
        "2026-12-03 19:00:00Z",
        "20261203T190000Z",
        "2026-W49-4T19:00:00Z",
        "2026-02-30T19:00:00Z",
        "2026-12-03T24:00:00Z",
        "2026-12-03T23:59:60Z",
        "2026-12-03T19:00:00+24:00",
        "2026-12-03T19:00:00+02:75",  # fromisoformat alone would read this as +03:15
        "2026-12-03T19:00:00.Z",
        "２０２６-12-03T19:00:00Z",  # non-ASCII digits
        "2026-12-03T19:00Z",
        " 2026-12-03T19:00:00Z",
    ],
)
def test_non_rfc3339_times_are_refused(text: str) -> None:
    with pytest.raises(EnvelopeRejected) as info:
        parse_time(text, what="claim 'exp'")
    assert "claim 'exp'" in str(info.value)
    assert info.value.code == "bad_claims"


@pytest.mark.parametrize("amount", ["-1", "NaN", "Infinity", "1e3", " 5", "5.", ".5", "01", "1.1234567", 25, 25.0])
def test_budget_amount_must_be_a_plain_decimal_string(amount: object) -> None:
    with pytest.raises(EnvelopeRejected, match="budget.amount"):
        Budget.from_payload({"amount": amount, "period": "month"})


def test_budget_rejects_negative_nan_inf_and_floats_in_code() -> None:
    for bad in (Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(EnvelopeRejected, match="finite amount >= 0"):
            Budget(bad, "total")
    with pytest.raises(EnvelopeRejected, match="expected a Decimal, got float"):
        Budget(25.0, "total")  # type: ignore[arg-type]
    with pytest.raises(EnvelopeRejected, match="budget.period"):
        Budget.from_payload({"amount": "1", "period": "week"})
    with pytest.raises(EnvelopeRejected, match="unexpected keys"):
        Budget.from_payload({"amount": "1", "period": "total", "currency": "EUR"})
    assert Budget(Decimal("1E+3"), "total").to_payload()["amount"] == "1000"
    assert Budget.from_payload({"amount": "0", "period": "total"}).amount == Decimal("0")


@pytest.mark.parametrize(
    ("change", "claim"),
    [
        ({"sub": 42}, "'sub'"),
        ({"sub": ""}, "'sub'"),
        ({"email": "not-an-email"}, "'email'"),
        ({"iat": 1764788400}, "'iat'"),
        ({"exp": "tomorrow"}, "'exp'"),
        ({"nbf": "2026-12-03T19:00:00"}, "'nbf'"),
        ({"project": ["a"]}, "'project'"),
        ({"url": "javascript:alert(1)"}, "'url'"),
        ({"budget": "25.00"}, "'budget'"),
        ({"role": "root"}, "'role'"),
        ({"aud": "other"}, "unknown claim"),
        ({"exp": "2026-12-03T17:00:00Z"}, "not after iat"),
    ],
)
def test_malformed_claims_name_the_bad_claim(change: dict[str, Any], claim: str) -> None:
    payload = _claims().to_payload() | change
    with pytest.raises(EnvelopeRejected, match=claim) as info:
        Claims.from_payload(payload)
    assert info.value.code == "bad_claims"
    assert "ada.lovelace" not in str(info.value)


def test_missing_required_claim_is_named() -> None:
    payload = _claims().to_payload()
    del payload["jti"]
    with pytest.raises(EnvelopeRejected, match="required claim 'jti' is missing"):
        Claims.from_payload(payload)
    with pytest.raises(EnvelopeRejected, match="expected a JSON object, got an array"):
        Claims.from_payload([payload])


# ---------------------------------------------------------------------------------------------- issue/verify


@pytest.fixture(scope="module")
def signing_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes(range(32)))


@pytest.fixture(scope="module")
def other_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(bytes(range(1, 33)))


@pytest.fixture
def signer(signing_key: nacl.signing.SigningKey) -> EnvelopeSigner:
    return EnvelopeSigner(signing_key, DEPLOYMENT)


def _verifier(*keys: nacl.signing.SigningKey, deployment: str = DEPLOYMENT, now: datetime = NOW) -> EnvelopeVerifier:
    pks = {k4_pid(bytes(k.verify_key)): bytes(k.verify_key) for k in keys}
    return EnvelopeVerifier(pks, deployment, clock=lambda: now.timestamp())


def _reject(verifier: EnvelopeVerifier, token: str) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as info:
        verifier.verify(token)
    assert token not in str(info.value) or not token
    return info.value


def _flip(text: str, index: int) -> str:
    # Replace one base64url character with another valid one (changes the decoded bytes).
    swap = "B" if text[index] != "B" else "C"
    return text[:index] + swap + text[index + 1 :]


def test_issue_then_verify(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    assert token.startswith("v4.public.")
    assert 600 <= len(token) <= 1000  # every claim set, long memo and url: ~820 chars
    assert signer.kid == k4_pid(bytes(signing_key.verify_key))
    footer = json.loads(b64url_decode(token.rsplit(".", 1)[1]))
    assert footer == {"kid": signer.kid}
    assert _verifier(signing_key).verify(token) == _claims()


def test_verifier_accepts_any_configured_key_during_rotation(
    signing_key: nacl.signing.SigningKey, other_key: nacl.signing.SigningKey
) -> None:
    verifier = _verifier(signing_key, other_key)
    for key in (signing_key, other_key):
        assert verifier.verify(EnvelopeSigner(key, DEPLOYMENT).issue(_claims())).jti == _claims().jti
    assert verifier.kids == {k4_pid(bytes(k.verify_key)) for k in (signing_key, other_key)}


def test_attack_flipped_byte_in_payload(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    assert _reject(_verifier(signing_key), _flip(token, len("v4.public.") + 20)).code == "bad_signature"


def test_attack_budget_raised_in_payload(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    head, body, footer = token.split(".")[1], token.split(".")[2], token.split(".")[3]
    raw = b64url_decode(body)
    forged = raw[:-64].replace(b'"25.00"', b'"99.00"') + raw[-64:]
    assert forged != raw
    forged_token = f"v4.{head}.{b64url_encode(forged)}.{footer}"
    assert _reject(_verifier(signing_key), forged_token).code == "bad_signature"


def test_attack_flipped_byte_in_signature(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    body_end = token.rindex(".")
    assert _reject(_verifier(signing_key), _flip(token, body_end - 10)).code == "bad_signature"


def test_attack_token_from_other_deployment(signing_key: nacl.signing.SigningKey) -> None:
    token = EnvelopeSigner(signing_key, "acme-staging").issue(_claims())
    error = _reject(_verifier(signing_key), token)
    assert error.code == "bad_signature"
    assert "another deployment" in str(error)


def test_attack_unknown_kid(other_key: nacl.signing.SigningKey, signing_key: nacl.signing.SigningKey) -> None:
    token = EnvelopeSigner(other_key, DEPLOYMENT).issue(_claims())
    error = _reject(_verifier(signing_key), token)
    assert error.code == "unknown_kid"


def test_attack_footer_kid_swapped_to_another_trusted_key(
    signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey, other_key: nacl.signing.SigningKey
) -> None:
    token = signer.issue(_claims())
    other_kid = k4_pid(bytes(other_key.verify_key))
    swapped_footer = b64url_encode(json.dumps({"kid": other_kid}, separators=(",", ":")).encode())
    swapped = token.rsplit(".", 1)[0] + "." + swapped_footer
    assert _reject(_verifier(signing_key, other_key), swapped).code == "bad_signature"


def test_attack_footer_stripped_or_not_json(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    body = token.rsplit(".", 1)[0]
    verifier = _verifier(signing_key)
    assert _reject(verifier, body).code == "bad_footer"
    assert _reject(verifier, body + "." + b64url_encode(b"kid=abc")).code == "bad_footer"
    assert _reject(verifier, body + "." + b64url_encode(b'{"kid": 7}')).code == "bad_footer"
    assert _reject(verifier, body + "." + b64url_encode(b'{"kid":"' + b"x" * 400 + b'"}')).code == "bad_footer"
    assert _reject(verifier, body + "." + b64url_encode(b"[" * 200 + b"]" * 200)).code == "bad_footer"


def test_attack_expired(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    claims = _claims(exp=NOW - timedelta(minutes=5), iat=NOW - timedelta(days=1), nbf=None)
    error = _reject(_verifier(signing_key), signer.issue(claims))
    assert error.code == "expired"
    assert "expired at 2026-12-03T18:55:00Z" in str(error)
    assert "now 2026-12-03T19:00:00Z" in str(error)


def test_expiry_within_leeway_is_accepted(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    claims = _claims(exp=NOW - timedelta(seconds=20), iat=NOW - timedelta(days=1), nbf=None)
    assert _verifier(signing_key).verify(signer.issue(claims)) == claims


def test_attack_not_yet_valid(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    claims = _claims(nbf=NOW + timedelta(hours=2))
    error = _reject(_verifier(signing_key), signer.issue(claims))
    assert error.code == "not_yet_valid"
    assert "usable from 2026-12-03T21:00:00Z" in str(error)


def test_attack_issued_in_the_future(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    claims = _claims(iat=NOW + timedelta(hours=1), nbf=None)
    error = _reject(_verifier(signing_key), signer.issue(claims))
    assert error.code == "not_yet_valid"
    assert "issued in the future" in str(error)


def test_attack_v4_local_header(signing_key: nacl.signing.SigningKey) -> None:
    error = _reject(_verifier(signing_key), LOCAL[4]["token"])
    assert error.code == "not_v4_public"
    assert "v4.local" in str(error)


def test_attack_other_versions_and_non_tokens(signing_key: nacl.signing.SigningKey, signer: EnvelopeSigner) -> None:
    verifier = _verifier(signing_key)
    body = signer.issue(_claims()).removeprefix("v4.public.")
    assert "v2.public" in str(_reject(verifier, "v2.public." + body))
    assert "v3.public" in str(_reject(verifier, "v3.public." + body))
    assert "header is missing" in str(_reject(verifier, "sk-proj-abcdef0123456789"))
    assert "header is missing" in str(_reject(verifier, "V4.PUBLIC." + body))


def test_attack_truncated(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    verifier = _verifier(signing_key)
    for cut in (len("v4.public.") + 40, len(token) // 2, token.rindex(".")):
        error = _reject(verifier, token[:cut] if (cut - 10) % 4 != 1 else token[: cut - 1])
        assert error.code in {"truncated", "bad_footer"}
        assert "truncated" in str(error)
    assert _reject(verifier, "v4.public.").code == "truncated"
    # Dropping characters from the end of the footer breaks it rather than passing.
    assert _reject(verifier, token[:-2]).code in {"bad_footer", "bad_base64"}


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        (lambda t: t + "=", "padding on the footer"),
        (lambda t: t[: t.rindex(".")] + "==" + t[t.rindex(".") :], "padding on the body"),
        (lambda t: t[:20] + "+" + t[21:], "standard alphabet '+'"),
        (lambda t: t[:20] + "/" + t[21:], "standard alphabet '/'"),
        (lambda t: t[:20] + " " + t[21:], "whitespace"),
        (lambda t: t[:20] + "é" + t[21:], "non-ASCII"),
    ],
)
def test_attack_bad_base64(
    signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey, mutation: Any, why: str
) -> None:
    token = signer.issue(_claims())
    error = _reject(_verifier(signing_key), mutation(token))
    assert error.code == "bad_base64", why
    assert "base64url" in str(error)


def test_attack_non_canonical_base64_tail(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    # The footer {"kid":"k4.pid.<44>"} is 61 bytes -> 82 chars, whose last char has 4 unused bits.
    token = signer.issue(_claims())
    footer = token.rsplit(".", 1)[1]
    assert len(footer) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tail = alphabet[alphabet.index(footer[-1]) | 1]  # same decoded bytes, unused bit set
    error = _reject(_verifier(signing_key), token[:-1] + tail)
    assert error.code == "bad_base64" and "non-canonical" in str(error)


def test_attack_empty_string(signing_key: nacl.signing.SigningKey) -> None:
    assert "empty" in str(_reject(_verifier(signing_key), ""))
    with pytest.raises(EnvelopeRejected, match="expected the envelope as text"):
        _verifier(signing_key).verify(None)  # type: ignore[arg-type]


def test_attack_huge_input_is_refused_before_any_parsing(
    signing_key: nacl.signing.SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("an oversized token reached the base64 decoder")

    monkeypatch.setattr("visionality.envelope.b64url_decode", no_decoding)
    huge = "v4.public." + "A" * (8 * 1024 * 1024)
    verifier = _verifier(signing_key)
    start = time.perf_counter()
    error = _reject(verifier, huge)
    assert time.perf_counter() - start < 0.05  # one len(); decoding 8 MiB would take far longer
    assert error.code == "too_large"
    assert f"limit {MAX_TOKEN_CHARS}" in str(error)
    assert _reject(verifier, "v4.public." + "A" * (MAX_TOKEN_CHARS - 9)).code == "too_large"  # 16 KiB + 1


def test_attack_extra_dot_segments(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    assert "parts" in str(_reject(_verifier(signing_key), token + ".e30"))


def test_signed_payload_that_is_not_claims_is_rejected(signing_key: nacl.signing.SigningKey) -> None:
    # Signed by the trusted key for this deployment, but not Visionality claims: still refused.
    sk64 = bytes(signing_key) + bytes(signing_key.verify_key)
    footer = json.dumps({"kid": k4_pid(bytes(signing_key.verify_key))}, separators=(",", ":")).encode()
    verifier = _verifier(signing_key)
    for payload in (b"not json", b"\xff\xfe", b'{"data":"this is a signed message"}', b"[1,2]"):
        token = sign_v4_public(sk64, payload, footer, DEPLOYMENT.encode())
        assert _reject(verifier, token).code == "bad_claims"


def test_messages_are_distinct(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    token = signer.issue(_claims())
    verifier = _verifier(signing_key)
    other = EnvelopeSigner(nacl.signing.SigningKey(bytes(32)), DEPLOYMENT).issue(_claims())
    messages = {
        str(_reject(verifier, t))
        for t in (
            "",
            "v4.public." + "A" * MAX_TOKEN_CHARS,
            LOCAL[0]["token"],
            token + "=",
            "v4.public.AAAA",
            token.rsplit(".", 1)[0],
            other,
            _flip(token, 30),
            EnvelopeSigner(signing_key, DEPLOYMENT).issue(
                _claims(exp=NOW - timedelta(hours=1), iat=NOW - timedelta(days=1), nbf=None)
            ),
            EnvelopeSigner(signing_key, DEPLOYMENT).issue(_claims(nbf=NOW + timedelta(hours=1))),
        )
    }
    assert len(messages) == 10


def test_verifier_configuration_errors(signing_key: nacl.signing.SigningKey) -> None:
    pk = bytes(signing_key.verify_key)
    with pytest.raises(ConfigError, match="does not match its key"):
        EnvelopeVerifier({"k4.pid.wrong": pk}, DEPLOYMENT)
    with pytest.raises(ConfigError, match="expected 32 bytes"):
        EnvelopeVerifier({"x": pk[:16]}, DEPLOYMENT)
    with pytest.raises(ConfigError, match="no public keys"):
        EnvelopeVerifier({}, DEPLOYMENT)
    with pytest.raises(ConfigError, match="deployment id"):
        EnvelopeVerifier({k4_pid(pk): pk}, "")
    with pytest.raises(ConfigError, match="leeway"):
        EnvelopeVerifier({k4_pid(pk): pk}, DEPLOYMENT, leeway_s=-1)
    with pytest.raises(ConfigError, match="SigningKey"):
        EnvelopeSigner(bytes(32), DEPLOYMENT)  # type: ignore[arg-type]


def test_verify_is_fast(signer: EnvelopeSigner, signing_key: nacl.signing.SigningKey) -> None:
    # The budget is 0.2 ms per verify (bench/bench_envelope.py measures it properly); this guards against
    # an accidental order-of-magnitude regression on a shared CI box, hence the loose 2 ms bound.
    token = signer.issue(_claims())
    verifier = _verifier(signing_key)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        verifier.verify(token)
    assert (time.perf_counter() - start) / n < 0.002


def test_footer_in_another_json_spelling_takes_the_slow_path(signing_key: nacl.signing.SigningKey) -> None:
    # Our signer emits compact JSON; another valid spelling of the same footer must still verify (and is
    # authenticated by the signature like any other footer).
    sk64 = bytes(signing_key) + bytes(signing_key.verify_key)
    footer = b'{ "kid" : "' + k4_pid(bytes(signing_key.verify_key)).encode() + b'" }'
    payload = json.dumps(_claims().to_payload()).encode()
    token = sign_v4_public(sk64, payload, footer, DEPLOYMENT.encode())
    assert _verifier(signing_key).verify(token) == _claims()
