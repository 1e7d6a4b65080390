"""Allow-list matching: known test and documentation values that are nobody's data.

An entry is a literal value or a glob (``*``, ``?``, ``[...]``, fnmatch syntax), compared after the same
normalisation as the finding: separators (spaces, ``-``, ``.``, ``(``, ``)``) are dropped from numbers and
identifiers, and e-mail addresses are compared case-insensitively. So ``4111 1111 1111 1111`` also allows
``4111-1111-1111-1111``, and ``*55501??`` allows every NANP 555-01xx fiction number in any format.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["AllowList"]

_SEPARATORS: Final = re.compile(r"[\s\-.()]")
# Types whose dots are part of the value, not a separator.
_KEEP_DOTS: Final = frozenset({"EMAIL_ADDRESS", "IP_ADDRESS", "API_KEY", "PRIVATE_KEY"})


def _normalise(entity_type: str, value: str) -> str:
    if entity_type == "EMAIL_ADDRESS":
        return value.strip().lower()
    if entity_type in _KEEP_DOTS:
        return value.strip()
    return _SEPARATORS.sub("", value)


class AllowList:
    """Compiled once per scanner; matching is one regex test per finding."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = tuple(entries)
        self._compiled: dict[str, re.Pattern[str] | None] = {}

    def _pattern(self, entity_type: str) -> re.Pattern[str] | None:
        if entity_type not in self._compiled:
            parts = []
            for entry in self._entries:
                # An e-mail entry only applies to e-mail findings and vice versa.
                if ("@" in entry) != (entity_type == "EMAIL_ADDRESS"):
                    continue
                parts.append(fnmatch.translate(_normalise(entity_type, entry)))
            self._compiled[entity_type] = re.compile("|".join(parts)) if parts else None
        return self._compiled[entity_type]

    def warm(self, entity_types: Iterable[str]) -> None:
        """Compile every type's pattern now, so scanning threads only read the dict."""
        for entity_type in entity_types:
            self._pattern(entity_type)

    def allows(self, entity_type: str, value: str) -> bool:
        pattern = self._pattern(entity_type)
        return pattern is not None and pattern.match(_normalise(entity_type, value)) is not None
