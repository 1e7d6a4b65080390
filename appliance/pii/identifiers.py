"""IBAN_CODE (ISO 13616 mod-97 via Presidio) and UK_NINO (HMRC format rules)."""

from __future__ import annotations

from typing import Final

from .context import ContextWords
from .presidio_validators import PresidioValidators

__all__ = ["iban_end", "nino_score"]

# HMRC NIM39110: these prefix pairs are never allocated (plus administrative "OO", "FY", "NC", "PP" and the
# temporary "TN"); Presidio excludes the first seven.
_BAD_NINO_PREFIXES: Final = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ", "OO", "FY", "NC", "PP"})
_NINO_WORDS: Final = ContextWords(["national insurance", "ni number", "ni no", "nino", "nin"])


def iban_end(text: str, start: int, end: int, validators: PresidioValidators) -> int:
    """End of the longest valid IBAN starting at ``start`` within the candidate, or -1.

    Like Presidio's ``IbanRecognizer`` (groups 3 -> 1), a trailing group that belongs to the next word
    ("DE89 3704 0044 0532 0130 00 2024") is dropped before giving up.
    """
    cut = end
    while cut - start >= 15:  # Norway, the shortest IBAN, has 15 characters
        if validators.iban_ok(text[start:cut].upper()):  # "gb33bukb...": the registry formats are upper case
            return cut
        space = max(text.rfind(" ", start, cut), text.rfind("-", start, cut))
        if space <= start:
            return -1
        cut = space
    return -1


def nino_score(text: str, start: int, end: int) -> float:
    compact = text[start:end].replace(" ", "")
    if compact[0] in "DFIQUV" or compact[1] in "DFIOQUV" or compact[:2] in _BAD_NINO_PREFIXES:
        return 0.0
    spaced = compact != text[start:end]
    if spaced and text[start:end].count(" ") not in (0, 4):
        return 0.0  # "AB 12 34 56 C" or "AB123456C"; other spacings are something else
    base = 0.6
    return 1.0 if _NINO_WORDS.found_before(text, start) else base
