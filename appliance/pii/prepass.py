"""The one cheap pass over the text that finds candidate spans for all twelve detectors.

A single compiled alternation, one named group per candidate shape. Every quantifier is bounded, so the scan is
linear in the text size and cannot backtrack catastrophically (no regex timeout is needed; contrast Presidio
issues #1461 and #1584). The validators then look only at these spans plus a little context.

Matches never overlap: at a position the first branch that matches wins and the scan resumes after it. Branch
order therefore goes from the most specific (fixed prefixes) to the most generic (digit runs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final

__all__ = ["MAX_CANDIDATE_CHARS", "Candidate", "iter_candidates"]

# Secrets carry fixed, case-sensitive prefixes; ``(?<![A-Za-z0-9_-])`` keeps "task-force" or "risk-free" from
# offering "sk-" (the global IGNORECASE Presidio uses by default would turn "SK-" into a hit as well).
_SECRET: Final = (
    r"(?P<secret>(?<![A-Za-z0-9_\-])"
    r"(?:sk-|sk_live_|rk_live_|gh[pousr]_|github_pat_|xox[abprs]-|AIza)[A-Za-z0-9_\-]{10,300})"
)
# A JWT's header is base64url JSON, so it starts with "{" -> "e", then '"' or a space -> "y" (RFC 7519 §7.2).
_JWT: Final = (
    r"(?P<jwt>(?<![A-Za-z0-9_\-.])e[wy][A-Za-z0-9_\-]{8,2000}\.[A-Za-z0-9_\-]{2,4000}\.[A-Za-z0-9_\-]{0,2000})"
)
# AWS access key ids: 4-letter type prefix + 16 upper-case base32 characters (AWS IAM "Unique identifiers").
_AWS: Final = r"(?P<aws>(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9]))"
# The 40-character secret access key has no prefix: only taken when its usual name precedes it.
_AWS_SECRET: Final = (
    r"(?P<awsctx>(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)[\"'\s:=>]{1,8})"
    r"(?P<awssecret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_PEM: Final = r"(?P<pem>-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)"
# RFC 5321 caps the local part at 64 octets; the bound also keeps the scan linear inside long tokens.
_EMAIL: Final = r"(?P<email>(?<![\w.%+'\-])[\w.%+'\-]{1,64}@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,8})"
# IBAN: ISO 13616 -- country, two check digits, up to 30 alphanumerics, printed in groups of four.
_IBAN: Final = (
    r"(?P<iban>(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,3})?(?![A-Za-z0-9]))"
)
# NINO: HMRC NIM39110 -- prefix letters exclude D F I Q U V (and O second), suffix A-D.
_NINO: Final = (
    r"(?P<nino>(?<![A-Za-z0-9])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9]))"
)
# IPv6 needs "::" or eight groups; that check is done in code, the regex only finds hex-and-colon runs.
_IPV6: Final = (
    r"(?P<ipv6>(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{0,34}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3})?(?:/\d{1,3})?(?![\w:.]))"
)
_IPV4: Final = r"(?P<ipv4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?![\w]|\.\d))"
# Digit runs with the separators people type in cards, phones, SSNs, NHS and routing numbers, an optional
# international "+" or "(", and an optional phone extension. At least 8 characters: every numeric entity has
# 9+ digits except short national phone numbers, which are out of scope (docs/pii.md).
_NUMBER: Final = (
    r"(?P<num>(?<![\w+/.:\-])(?:\+|\(\+?)?\d[\d \-.()/]{6,48}\d\)?"
    r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6}(?!\w))?)"
)

# The shared ``(?<!\w)`` guard is what makes the pass cheap: inside a word every position fails on one
# look-behind instead of trying eleven branches (measured 45 ms -> 13 ms per 100 KB of prose on this box).
_CANDIDATES: Final = re.compile(
    r"(?<!\w)(?=[\-\w+(:])(?:"
    + "|".join((_PEM, _SECRET, _JWT, _AWS, _AWS_SECRET, _EMAIL, _IBAN, _NINO, _IPV6, _IPV4, _NUMBER))
    + ")"
)

# No branch can match more than this many characters (the JWT branch is the longest). Chunks overlap by this
# much, so a candidate straddling a chunk edge is always seen whole in one chunk.
MAX_CANDIDATE_CHARS: Final = 8_200
# Chunk size for the pre-pass: the deadline is checked between chunks, so even a multi-megabyte body with
# no candidate at all cannot run past it unobserved.
_CHUNK: Final = 65_536

Candidate = tuple[str, int, int]
"""(kind, start, end): kind is the named group that matched (``awssecret`` spans only the key itself)."""


def iter_candidates(text: str, before_chunk: Callable[[], None] | None = None) -> Iterator[Candidate]:
    """Yield candidate spans in text order; ``before_chunk`` (the deadline check) runs before every chunk."""
    pos = 0
    size = len(text)
    while pos < size:
        if before_chunk is not None:
            before_chunk()
        limit = min(size, pos + _CHUNK)
        endpos = min(size, limit + MAX_CANDIDATE_CHARS)
        next_pos = limit
        for m in _CANDIDATES.finditer(text, pos, endpos):
            if m.start() >= limit:
                break
            kind = m.lastgroup
            if kind is None:  # pragma: no cover - every alternative is a named group
                continue
            if kind == "awssecret":
                yield ("awssecret", m.start("awssecret"), m.end("awssecret"))
            else:
                yield (kind, m.start(), m.end())
            next_pos = max(next_pos, m.end())
        pos = next_pos
