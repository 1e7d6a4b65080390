"""Parsing durations like ``30d`` for key expiry."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RE = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``30d``, ``8w`` -> timedelta. Raises ValueError with the accepted forms."""
    m = _RE.match(text)
    if not m:
        raise ValueError(f"expected a duration like 30d, 12h, 90m or 8w; got {text!r}")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return timedelta(seconds=seconds)
