"""Allow-list matching: known test and documentation values that are nobody's data.

An entry is a literal value or a glob (``*``, ``?``, ``[...]``, fnmatch syntax), compared after the same
normalisation as the finding: separators (spaces, ``-``, ``.``, ``(``, ``)``) are dropped from numbers and
identifiers, and e-mail addresses are compared case-insensitively. So ``4111 1111 1111 1111`` also allows
``4111-1111-1111-1111``, and ``[23456789]??55501??`` allows every NANP 555-01xx fiction number
written as ten digits in any layout.

Each entry applies to some detectors only (a red-team audit found the old ``*55501??`` letting through a
Luhn-valid card ``4539148815550123`` and the UK number ``+44 20 7555 0123``):

- ``TYPE:value`` (``PHONE_NUMBER:*555-01??``) applies to that detector only;
- a value listed in ``scopes`` (the default entries, policy.py ``DEFAULT_ALLOW_SCOPES``) to the detectors given;
- any other entry with ``@`` to e-mail findings only, and one without ``@`` to every other detector.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Final

from .findings import ENTITY_TYPES

__all__ = ["AllowList", "entry_scope"]

_SEPARATORS: Final = re.compile(r"[\s\-.()]")
# Types whose dots are part of the value, not a separator.
_KEEP_DOTS: Final = frozenset({"EMAIL_ADDRESS", "IP_ADDRESS", "API_KEY", "PRIVATE_KEY"})
_NOT_EMAIL: Final = frozenset(ENTITY_TYPES) - {"EMAIL_ADDRESS"}


def _normalise(entity_type: str, value: str) -> str:
    if entity_type == "EMAIL_ADDRESS":
        return value.strip().lower()
    if entity_type in _KEEP_DOTS:
        return value.strip()
    if entity_type == "IBAN_CODE":
        return _SEPARATORS.sub("", value).upper()  # "de89 3704 ..." is the registry example all the same
    return _SEPARATORS.sub("", value)


def entry_scope(entry: str, scopes: Mapping[str, frozenset[str]]) -> tuple[frozenset[str], str]:
    """(the detectors ``entry`` applies to, its value without a ``TYPE:`` prefix)."""
    prefix, colon, rest = entry.partition(":")
    if colon and prefix in ENTITY_TYPES:
        return frozenset({prefix}), rest
    if entry in scopes:
        return scopes[entry], entry
    return (frozenset({"EMAIL_ADDRESS"}) if "@" in entry else _NOT_EMAIL), entry


class AllowList:
    """Compiled once per scanner; matching is one regex test per finding."""

    def __init__(self, entries: Iterable[str], scopes: Mapping[str, frozenset[str]] | None = None) -> None:
        self._entries = tuple(entry_scope(entry, scopes or {}) for entry in entries)
        self._compiled: dict[str, re.Pattern[str] | None] = {}

    def _pattern(self, entity_type: str) -> re.Pattern[str] | None:
        if entity_type not in self._compiled:
            parts = [
                fnmatch.translate(_normalise(entity_type, value))
                for types, value in self._entries
                if entity_type in types
            ]
            self._compiled[entity_type] = re.compile("|".join(parts)) if parts else None
        return self._compiled[entity_type]

    def warm(self, entity_types: Iterable[str]) -> None:
        """Compile every type's pattern now, so scanning threads only read the dict."""
        for entity_type in entity_types:
            self._pattern(entity_type)

    def allows(self, entity_type: str, value: str) -> bool:
        pattern = self._pattern(entity_type)
        return pattern is not None and pattern.match(_normalise(entity_type, value)) is not None
