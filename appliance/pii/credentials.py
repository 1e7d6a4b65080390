"""Secrets: API_KEY (provider tokens and JWTs), AWS_ACCESS_KEY and PRIVATE_KEY (PEM blocks).

All prefixes are matched case-sensitively: providers issue them in one case, and Presidio's default
``IGNORECASE`` would turn prose such as "SK-8 skates" or "Xoxo" into candidates.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Final

__all__ = ["api_key_score", "aws_key_score", "aws_secret_score", "jwt_score", "pem_end"]

# Minimum body length after the prefix, per issuer (documented formats; lengths are conservative floors).
_MIN_BODY: Final[tuple[tuple[str, int], ...]] = (
    ("sk-ant-", 80),  # Anthropic: sk-ant-api03-<95 chars>
    ("sk-proj-", 40),  # OpenAI project keys (~156 chars)
    ("sk-svcacct-", 40),  # OpenAI service-account keys
    ("sk-admin-", 40),  # OpenAI admin keys
    ("sk-", 32),  # OpenAI legacy: sk-<48 alphanumerics>
    ("sk_live_", 24),  # Stripe secret key
    ("rk_live_", 24),  # Stripe restricted key
    # Stripe test-mode keys: no money moves, but they read and write the account's test data (customers'
    # e-mails and names end up there too), and Stripe tells users to keep them secret like live keys.
    ("sk_test_", 24),
    ("rk_test_", 24),
    ("github_pat_", 70),  # GitHub fine-grained PAT: 22 + "_" + 59
    ("ghp_", 36),  # GitHub classic tokens: 36 base62 characters, the last 6 a CRC32 checksum
    ("gho_", 36),
    ("ghu_", 36),
    ("ghs_", 36),
    ("ghr_", 36),
    ("xox", 20),  # Slack xoxb-/xoxp-/xoxa-/xoxr-/xoxs-: numeric ids plus a random part
    ("AIza", 35),  # Google API key: AIza + 35
)


def _random_enough(body: str) -> bool:
    """Rejects placeholders ("sk-xxxxxxxx...", "sk-your-key-goes-here-please"): real tokens are random."""
    return len(set(body)) >= 10 and any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def api_key_score(token: str) -> float:
    """1.0 for a provider token of the documented shape, 0.0 otherwise."""
    for prefix, min_body in _MIN_BODY:
        if token.startswith(prefix):
            body = token[len(prefix) :]
            if prefix == "AIza":
                body = body[:35]
            if len(body) >= min_body and _random_enough(body):
                return 1.0
            return 0.0
    return 0.0


def jwt_score(token: str) -> float:
    """1.0 when the first segment base64url-decodes to a JSON object with an "alg" (RFC 7515 §4.1.1)."""
    header = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return 0.0
    return 1.0 if isinstance(decoded, dict) and "alg" in decoded else 0.0


def aws_key_score(token: str) -> float:
    """AKIA/ASIA + 16: real ids are random base32; "AKIAXXXXXXXXXXXXXXXX" placeholders are not."""
    return 1.0 if len(set(token[4:])) >= 6 else 0.0


def aws_secret_score(token: str) -> float:
    """A 40-character secret that followed its name (the pre-pass required it): mixed classes, random."""
    classes = sum((any(c.islower() for c in token), any(c.isupper() for c in token), any(c.isdigit() for c in token)))
    return 1.0 if classes >= 2 and len(set(token)) >= 15 else 0.0


# After the BEGIN line: optional RFC 1421 headers (encrypted PKCS#1) or OpenPGP armor headers (RFC 4880
# §6.2: "Version:", "Comment:", ...; GnuPG 1.x writes "Version: GnuPG v1"), then base64 text. Literal "\n" escapes
# count as line breaks, since keys pasted from .env files and JSON arrive that way.
_PEM_BODY: Final = re.compile(
    r"(?:\s|\\[nr]|Proc-Type:[^\n\\]{0,80}|DEK-Info:[^\n\\]{0,120}"
    r"|(?:Version|Comment|Hash|Charset|MessageID):[^\n\\]{0,200}){1,12}[A-Za-z0-9+/=]{32,}(?:(?:\s|\\[nr])*[A-Za-z0-9+/=]+){0,400}"
)


def pem_end(text: str, header_end: int) -> int:
    """End of the key material after a BEGIN ... PRIVATE KEY line, or -1 when no base64 body follows.

    A header alone ("paste your -----BEGIN PRIVATE KEY----- here") is documentation, not a key.
    """
    m = _PEM_BODY.match(text, header_end)
    return m.end() if m else -1
