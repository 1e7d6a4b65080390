"""Secrets (appliance/pii/credentials.py): provider tokens, JWTs, AWS keys, PEM blocks."""

from __future__ import annotations

import base64
import json

import pytest
from visionality.pii.credentials import api_key_score, aws_key_score, aws_secret_score, jwt_score, pem_end

B62 = "Ab3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zaBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"


@pytest.mark.parametrize(
    "token",
    [
        "sk-" + B62[:20] + "T3BlbkFJ" + B62[20:40],  # OpenAI legacy
        "sk-proj-" + B62 + B62,  # OpenAI project key
        "sk-ant-api03-" + (B62 * 2)[:93] + "AA",  # Anthropic
        "ghp_" + B62[:36],
        "github_pat_" + B62[:22] + "_" + B62[:59],
        "xoxb-1234567890123-1234567890123-" + B62[:24],
        "sk_live_" + B62[:24],
        "rk_live_" + B62[:24],
        "AIza" + B62[:35],
    ],
)
def test_provider_tokens(token: str) -> None:
    assert api_key_score(token) == 1.0


@pytest.mark.parametrize(
    "placeholder",
    ["sk-" + "x" * 48, "sk-your-api-key-goes-here-right-now", "ghp_" + "X" * 36, "sk_live_" + "0" * 24, "ghp_short1"],
)
def test_placeholders_are_not_keys(placeholder: str) -> None:
    assert api_key_score(placeholder) == 0.0


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_jwt_header_must_decode_to_json_with_alg() -> None:
    body = _b64({"sub": "1"}) + ".c2ln"
    assert jwt_score(_b64({"alg": "HS256", "typ": "JWT"}) + "." + body) == 1.0
    assert jwt_score(_b64({"typ": "JWT"}) + "." + body) == 0.0
    assert jwt_score("eyJub3QganNvbg." + body) == 0.0
    assert jwt_score("eyJ!!!." + body) == 0.0


def test_aws_ids_and_secrets() -> None:
    assert aws_key_score("AKIAQWERTYUIOPASDF12") == 1.0
    assert aws_key_score("AKIAXXXXXXXXXXXXXXXX") == 0.0
    assert aws_secret_score("wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234567890") == 1.0
    assert aws_secret_score("a" * 40) == 0.0


def test_pem_needs_key_material() -> None:
    header = "-----BEGIN PRIVATE KEY-----"
    key = header + "\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
    assert pem_end(key, len(header)) > len(header)
    escaped = header + "\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\\n"
    assert pem_end(escaped, len(header)) > len(header)
    assert pem_end(header + "\n...\n-----END PRIVATE KEY-----", len(header)) == -1
    encrypted = header + "\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0011\n\n" + "A" * 64
    assert pem_end(encrypted, len(header)) > 0


def test_attack_stripe_test_mode_keys() -> None:
    assert api_key_score("sk_test_51HqLyjWDarjtT1zdp7dcXm2Ab1Cd3Ef4Gh5") == 1.0
    assert api_key_score("rk_test_51HqLyjWDarjtT1zdp7dcXm2Ab1Cd3Ef4Gh5") == 1.0
    assert api_key_score("sk_test_xxxxxxxxxxxxxxxxxxxxxxxxxxxx") == 0.0  # a placeholder


def test_attack_pgp_key_with_armor_headers() -> None:
    block = (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v1\nComment: exported\n\n"
        "lQOYBF0123456789abcdefghijABCDEFGHIJ0123456789abcdefghij+/ABCDEFGH\n=abcd\n"
    )
    header_end = block.index("\n")
    assert pem_end(block, header_end) > header_end
    assert pem_end("-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v1\n\nthat is all", header_end) == -1
