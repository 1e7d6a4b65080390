"""The cheap pass over the text that finds candidate spans for all twelve detectors.

Speed comes from how CPython's ``re`` searches: when a pattern starts with a literal or a character set (or an
alternation whose branches all start with a literal), the engine skips non-matching characters in a tight C
loop (``_get_charset_prefix`` in re/_compiler.py); a pattern that starts with a look-behind is instead tried
at every position (~45 ns each here). So the pass is five *triggered* regexes, each starting on a character
that is rare in prose -- a digit, an upper-case letter, "@", ":" or a secret's first letter -- with the word
boundary checked by a look-behind *after* that character. Measured on this box: 45 ms -> ~4 ms per 100 KB of
prose (docs/pii.md, "Speed").

Every quantifier is bounded, so each regex is linear in the text size and cannot backtrack catastrophically
(contrast Presidio issues #1461 and #1584); no regex timeout is needed.

Candidates come out grouped by trigger, most specific first (secrets, identifiers, e-mail, IPv6, digit runs),
so the scanner can drop a digit run that lies inside an already validated IBAN, e-mail or key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final

__all__ = ["MAX_CANDIDATE_CHARS", "Candidate", "iter_candidates"]

# The AWS secret key's usual names ("aws_secret_access_key", "AWS_SECRET_KEY", "AWS_SECRET",
# "aws-secret-access-key", "SecretAccessKey"), any case.
# Each branch must start with a plain literal for the charset skip to work, hence one branch per first letter.
_AWS_KEY_NAME_TAILS: Final = (
    # "_" or "-" between the words ("aws-secret-access-key:" in YAML/CLI configs); "AWS_SECRET" alone too.
    r"[wW][sS][_\-]?[sS][eE][cC][rR][eE][tT](?:[_\-]?[aA][cC][cC][eE][sS][sS])?(?:[_\-]?[kK][eE][yY])?",  # "a"/"A"
    r"[eE][cC][rR][eE][tT][_\-]?[aA][cC][cC][eE][sS][sS][_\-]?[kK][eE][yY]",  # after "s"/"S"
)
_AWS_SECRET_BRANCHES: Final = "|".join(
    f"{first}{tail}[\"'\\s:=>]{{1,8}}(?P<awssecret{i}>[A-Za-z0-9/+]{{40}})(?![A-Za-z0-9/+=])"
    for i, (first, tail) in enumerate(
        (
            ("a", _AWS_KEY_NAME_TAILS[0]),
            ("A", _AWS_KEY_NAME_TAILS[0]),
            ("s", _AWS_KEY_NAME_TAILS[1]),
            ("S", _AWS_KEY_NAME_TAILS[1]),
        )
    )
)
# --- secrets and PEM: every branch starts with a literal, so only s r g x e a A S - positions are tried ---
# Prefix-anchored secrets are case-sensitive: providers issue them in one case (Presidio's default global
# IGNORECASE would make "SK-" or "Xoxo" candidates). The word boundary is checked in ``_boundary_ok``.
# ``_B`` after a branch's first character is the token boundary: without it every "e" inside a long token
# would start a 2000-character JWT attempt (200 KB of "eyey..." took 1 s). After the character, not before,
# so each branch still starts with a plain literal.
_B: Final = r"(?<![A-Za-z0-9_\-.].)"
_SECRETS: Final = re.compile(
    rf"s{_B}k-[A-Za-z0-9_\-]{{10,300}}+"  # OpenAI sk-, sk-proj-, sk-svcacct-, sk-admin-; Anthropic sk-ant-
    rf"|s{_B}k_(?:live|test)_[A-Za-z0-9]{{10,200}}+|r{_B}k_(?:live|test)_[A-Za-z0-9]{{10,200}}+"  # Stripe sk/rk
    rf"|g{_B}h[pousr]_[A-Za-z0-9]{{10,100}}+|g{_B}ithub_pat_[A-Za-z0-9_]{{10,200}}+"  # GitHub formats (2021)
    rf"|x{_B}ox[abprs]-[A-Za-z0-9\-]{{10,200}}+"  # Slack tokens
    # A JWT's header is base64url JSON, so it starts with "{" -> "e", then '"' or a space -> "y" (RFC 7519).
    rf"|e{_B}[wy][A-Za-z0-9_\-]{{8,2000}}+\.[A-Za-z0-9_\-]{{2,4000}}+\.[A-Za-z0-9_\-]{{0,2000}}+"
    r"|-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # The AWS secret access key has no prefix: only taken right after its usual name (any case; see below).
    r"|" + _AWS_SECRET_BRANCHES
)
# --- upper-case led: IBAN, NINO, AWS access key id, Google API key -----------------------------------------
_UPPER: Final = re.compile(
    r"[A-Z](?<![A-Za-z0-9].)(?:"
    # IBAN (ISO 13616): country, two check digits, up to 30 alphanumerics, printed in groups of four.
    r"(?P<iban>[A-Z]\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,3})?)"
    # NINO (HMRC NIM39110): prefix letters exclude D F I Q U V (and O second), suffix A-D.
    r"|(?P<nino>[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
    # AWS access key ids: AKIA (long-term) / ASIA (STS) + 16 upper-case base32 (AWS IAM "Unique identifiers").
    r"|(?P<aws>(?<=A)(?:KIA|SIA)[A-Z0-9]{16})"
    r"|(?P<google>(?<=A)Iza[0-9A-Za-z_\-]{35})"  # Google API keys: AIza + 35
    r")(?![A-Za-z0-9])"
)
# --- e-mail: found from its "@"; the local part is taken backwards in code (RFC 5321 caps it at 64) -------
_EMAIL_DOMAIN: Final = re.compile(r"@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,8}")
_EMAIL_LOCAL: Final = re.compile(r"[\w.%+'\-]{1,64}\Z")
_EMAIL_LOCAL_CHARS: Final = frozenset("._%+'-")
# --- IPv6: found from its first ":"; the leading hex group is taken backwards in code ---------------------
# Possessive quantifiers: a run of colons or "1:1:1:..." must fail at once, not backtrack (measured 4 s on
# 200 KB of ":" before). An embedded IPv4 ("::ffff:192.0.2.1") is left to the IPv4 detector.
_IPV6_TAIL: Final = re.compile(
    r":[0-9A-Fa-f]{0,4}+:[0-9A-Fa-f:]{0,34}+(?:%[0-9A-Za-z]{1,16})?(?:/\d{1,3})?(?![\w:]|\.\d)"
)
_HEX: Final = frozenset("0123456789abcdefABCDEF")
# --- digit runs: IPv4 and everything numeric (cards, phones, SSN, NHS, routing) ---------------------------
# ISO 8601 dates ("2024-01-15", the head of every log timestamp) are skipped in C; a run never starts after
# "." or after a "-" that follows a word (the middle of a date, version or range "1000-2000"), and needs 7+
# characters. A "-" after a space or at the start is a sign: "-5425233430109903" still reaches the provider.
_DIGIT_RUN: Final = re.compile(
    # One leading character set for both branches, so the C prefix skip still applies (an alternation of two
    # sets is tried at every position: 0.45 -> 2.2 ms per 100 KB of prose).
    r"[0-9+(](?:"
    # A lower-case IBAN ("gb33bukb20201555555555"): found from its first check digit, since a lower-case
    # country code is no rarer than any other pair of letters; the upper-case form is found by _UPPER.
    r"(?P<ibanlow>(?<=[a-z]{2}[0-9])(?<![A-Za-z0-9][a-z]{2}[0-9])[0-9]"
    r"(?:[ \-]?[A-Za-z0-9]{4}){2,7}(?:[ \-]?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9]))"
    r"|(?<![\w.].)(?<![\w.\-]-.)(?!\d{3}-[01]\d-[0-3]\d(?:[T ]\d|[^\d]|$))[0-9 \t\-.()/+]{6,8000}"
    r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6})?"
    r")"
)
_IPV4: Final = r"(?P<ipv4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?![\w]|\.\d))"
# Digit runs with the separators people type, an optional "+" or "(", and an optional phone extension. At
# least 8 characters: every numeric entity has 9+ digits except short national phone numbers (out of scope).
# A run is taken whole (up to 8,000 characters, within MAX_CANDIDATE_CHARS), not cut into 50-character pieces:
# a cut let "7 7 7 ... 5425 2334 3010 9903" split the card in two; numeric.py tries the run's sub-runs in linear
# time.
# A ":" before the digits is a label ("SSN:536-22-1234", '{"card":5425...}') unless it follows a digit or
# another ":" (a clock time "10:23:45", an IPv6 group).
_NUMBER: Final = (
    r"(?P<num>(?<![\w+/.])(?<![\w.\-]-)(?<![0-9:]:)(?:\+|\(\+?)?\d[\d \t\-.()/]{6,8000}\d\)?"
    r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6}(?!\w))?)"
)
_NUMERIC: Final = re.compile(_IPV4 + "|" + _NUMBER)

# No candidate is longer than this (the JWT branch is the longest). Chunks overlap by this much, so a candidate
# straddling a chunk edge is always seen whole.
MAX_CANDIDATE_CHARS: Final = 8_200
# The deadline is checked before every chunk, so even a multi-megabyte body cannot run past it unobserved.
_CHUNK: Final = 65_536
_TOKEN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

Candidate = tuple[str, int, int]
"""(kind, start, end). Kinds: secret, jwt, pem, awssecret, iban, nino, aws, email, ipv6, ipv4, num."""


def _chunks(pattern: re.Pattern[str], text: str, before_chunk: Callable[[], None] | None) -> Iterator[re.Match[str]]:
    pos, size = 0, len(text)
    while pos < size:
        if before_chunk is not None:
            before_chunk()
        limit = min(size, pos + _CHUNK)
        next_pos = limit
        for m in pattern.finditer(text, pos, min(size, limit + MAX_CANDIDATE_CHARS)):
            if m.start() >= limit:
                break
            yield m
            next_pos = max(next_pos, m.end())
        pos = next_pos


def _boundary_ok(text: str, start: int) -> bool:
    return start == 0 or text[start - 1] not in _TOKEN_CHARS


def iter_candidates(text: str, before_chunk: Callable[[], None] | None = None) -> Iterator[Candidate]:
    """Yield candidate spans, most specific kinds first; ``before_chunk`` (the deadline check) runs per chunk."""
    for m in _chunks(_SECRETS, text, before_chunk):
        start = m.start()
        head = text[start]
        if m.lastgroup is not None:  # the AWS secret key after its name
            yield ("awssecret", m.start(m.lastgroup), m.end(m.lastgroup))
        elif not _boundary_ok(text, start):
            continue
        elif head == "-":
            yield ("pem", start, m.end())
        elif head == "e":
            yield ("jwt", start, m.end())
        else:
            yield ("secret", start, m.end())
    for m in _chunks(_UPPER, text, before_chunk):
        kind = m.lastgroup
        if kind == "google":
            yield ("secret", m.start(), m.end())
        elif kind is not None:
            yield (kind, m.start(), m.end())
    for m in _chunks(_EMAIL_DOMAIN, text, before_chunk):
        at = m.start()
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        if local is None:
            continue
        start = local.start()
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in _EMAIL_LOCAL_CHARS):
            continue  # local part longer than 64 characters: not an address
        yield ("email", start, m.end())
    for m in _chunks(_IPV6_TAIL, text, before_chunk):
        start = m.start()
        lead = start
        while lead > 0 and start - lead < 4 and text[lead - 1] in _HEX:
            lead -= 1
        if lead > 0 and (text[lead - 1].isalnum() or text[lead - 1] in "_:."):
            continue
        yield ("ipv6", lead, m.end())
    for run in _chunks(_DIGIT_RUN, text, before_chunk):
        if run.lastgroup == "ibanlow":
            yield ("iban", run.start() - 2, run.end())
            continue
        for m in _NUMERIC.finditer(text, run.start(), run.end()):
            kind = m.lastgroup
            if kind is not None:
                yield (kind, m.start(), m.end())
