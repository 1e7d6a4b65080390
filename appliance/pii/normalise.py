"""Fold the text to the form the detectors read, so invisible or look-alike characters do not hide a value.

A red-team audit got card numbers, NHS numbers and e-mail addresses past the detectors with characters a reader
(and the model) does not see or reads as the ASCII one: ``5425\\u200b2334...`` (zero-width space), ``5425\\u00a02334``
(no-break space), ``536\\u201322\\u20131234`` (en dash), full-width ``５４２５...`` and ``jane＠acme-corp.com``. Before
scanning, each non-ASCII character is replaced by:

- nothing, when it is a format character (Unicode category ``Cf``: U+200B, U+00AD soft hyphen, U+2060, U+FEFF,
  bidi controls) -- invisible, so it cannot separate what the reader sees as one number;
- ``-`` for a dash (category ``Pd``: U+2010-U+2015, ...) or U+2212 minus;
- a space for a space separator (``Zs``: U+00A0, U+2009, U+202F, U+3000, ...);
- the ASCII digit of a decimal digit of any script (``unicodedata.decimal``: Arabic-Indic, Devanagari, ...);
- otherwise its NFKC form (UAX #15 compatibility mapping: full-width forms, ``＠`` -> ``@``, ligatures).

Characters are folded one at a time, so the work is linear in the text, and ASCII text (the common case) is
returned as it is without a copy. Folding can change the length (a dropped ``Cf``, ``…`` -> ``...``), so
``FoldedText`` maps positions in the folded text back to the original, for the findings' spans.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

__all__ = ["FoldedText", "fold"]

_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")


class _FoldTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each code point (a hit is a C dict lookup)."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        self[code] = folded
        return folded


def _fold_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cf":
        return ""
    if category == "Pd" or ch == "\u2212":
        return "-"
    if category == "Zs":
        return " "
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit)
    return unicodedata.normalize("NFKC", ch)


_TABLE: Final = _FoldTable()


@dataclass(frozen=True, slots=True)
class FoldedText:
    """The folded text and, when folding changed its length, where each length change happened.

    ``_folded_at[k]``: where the replacement of the k-th length-changing character starts in ``text``;
    ``_folded_end[k]``: where it ends (equal for a dropped character); ``_original_at[k]``: its original index.
    """

    text: str
    _folded_at: tuple[int, ...] = ()
    _folded_end: tuple[int, ...] = ()
    _original_at: tuple[int, ...] = ()

    def original_start(self, pos: int) -> int:
        """Index in the original text of the character that became ``text[pos]``."""
        k = bisect.bisect_right(self._folded_at, pos) - 1
        if k < 0:
            return pos
        if pos < self._folded_end[k]:
            return self._original_at[k]
        return self._original_at[k] + 1 + (pos - self._folded_end[k])

    def original_end(self, end: int) -> int:
        """The original end (exclusive) of a span ending (exclusive) at ``end`` in ``text``."""
        return self.original_start(end - 1) + 1 if end > 0 else 0


def fold(text: str) -> FoldedText:
    """``text`` folded as the module docstring says; linear in ``len(text)``."""
    if text.isascii():
        return FoldedText(text)
    parts: list[str] = []
    folded_at: list[int] = []
    folded_end: list[int] = []
    original_at: list[int] = []
    last = 0
    length = 0  # length of "".join(parts)
    for m in _NON_ASCII.finditer(text):
        parts.append(text[last : m.start()])
        length += m.start() - last
        segment = m.group()
        folded = segment.translate(_TABLE)
        if len(folded) != len(segment):
            # Rare (a dropped format character, an expanding compatibility form): per character, this segment only.
            for i, ch in enumerate(segment, m.start()):
                one = _TABLE[ord(ch)]
                if len(one) != 1:
                    folded_at.append(length)
                    folded_end.append(length + len(one))
                    original_at.append(i)
                length += len(one)
        else:
            length += len(folded)
        parts.append(folded)
        last = m.end()
    parts.append(text[last:])
    return FoldedText("".join(parts), tuple(folded_at), tuple(folded_end), tuple(original_at))
