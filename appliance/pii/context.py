"""Context words: the label a person writes before a value ("SSN:", "routing number", "NHS no.").

Presidio boosts scores with context words through its ``LemmaContextAwareEnhancer``, which needs spaCy lemmas;
with the ``no_op`` engine that boost is silently off (notes/pii-presidio.md). We do the same job with a plain
look-back window, which is O(window) per candidate instead of O(results x tokens).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONTEXT_WINDOW", "has_context"]

# Characters looked at before a candidate. Long enough for "Social Security Number (SSN): ", a JSON key or a
# short table header line; short enough that a label two paragraphs up does not count.
CONTEXT_WINDOW: Final = 80


def has_context(text: str, start: int, words: tuple[str, ...], window: int = CONTEXT_WINDOW) -> bool:
    """True when one of ``words`` (lower-case) occurs in the ``window`` characters before ``start``."""
    before = text[max(0, start - window) : start].lower()
    return any(word in before for word in words)
