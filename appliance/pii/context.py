"""Context words: the label a person writes before a value ("SSN:", "routing number", "NHS no.").

Presidio boosts scores with context words through its ``LemmaContextAwareEnhancer``, which needs spaCy lemmas;
with the ``no_op`` engine that boost is silently off (notes/pii-presidio.md). We do the same job with a plain
look-back, O(window) per candidate instead of O(results x tokens):

- the ``CONTEXT_WINDOW`` characters before the value, and
- the two lines above the value's line, which is where a CSV or markdown table keeps its column names.

Words match as whole words, case-insensitively, with ``_`` and ``-`` read as spaces, so ``ssn``,
``social_security_number`` and ``Social-Security`` all count, but "string" does not contain "ring" and
"cellular" does not contain "cell".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["CONTEXT_WINDOW", "ContextWords", "context_before"]

# Long enough for "Social Security Number (SSN): " or a JSON key; short enough that a label two paragraphs up
# does not count.
CONTEXT_WINDOW: Final = 80
# A header line longer than this is prose, not a table header.
_MAX_HEADER_LINE: Final = 400


class ContextWords:
    """One compiled matcher per detector; ``found_before`` is what validators call."""

    def __init__(self, words: Iterable[str]) -> None:
        alternatives = "|".join(re.escape(w.lower().replace("_", " ").replace("-", " ")) for w in words)
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z])")

    def found_before(self, text: str, start: int, window: int = CONTEXT_WINDOW) -> bool:
        """True when a word occurs just before ``start`` or in the two lines above its line."""
        return self.found_in(context_before(text, start, window))

    def found_in(self, context: str) -> bool:
        """Like ``found_before`` on a window already cut by ``context_before`` (several detectors share one)."""
        return self._pattern.search(context) is not None


def context_before(text: str, start: int, window: int = CONTEXT_WINDOW) -> str:
    """The normalised text a label for the value at ``start`` may be in (see the module docstring)."""
    lo = max(0, start - window)
    line_start = text.rfind("\n", 0, start)
    if line_start > 0:
        above = text.rfind("\n", 0, line_start)
        above = text.rfind("\n", 0, above) if above > 0 else above
        if line_start - above <= 2 * _MAX_HEADER_LINE:
            lo = min(lo, above + 1)
    return _normalise(text[lo:start])


def _normalise(s: str) -> str:
    return s.lower().replace("_", " ").replace("-", " ")
