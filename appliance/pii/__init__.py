"""PII pre-flight: twelve detectors on Presidio's validators, fail-closed, fast enough for every call.

Public API (the wire path's contract)::

    scanner = PiiScanner(PiiPolicy.from_mapping(config["pii"]))   # once, at start-up
    counts = scanner.scan_request("openai", "chat.completions", body, project)   # {} = clean
    if counts: raise PiiBlocked(counts)

See docs/pii.md for detectors, defaults, what is scanned and measured speed and accuracy.
"""

from __future__ import annotations

from .findings import ENTITY_TYPES, Finding
from .policy import DEFAULT_ALLOW_LIST, DEFAULT_THRESHOLD, DetectorPolicy, PiiPolicy
from .scanner import PiiScanner

__all__ = [
    "DEFAULT_ALLOW_LIST",
    "DEFAULT_THRESHOLD",
    "ENTITY_TYPES",
    "DetectorPolicy",
    "Finding",
    "PiiPolicy",
    "PiiScanner",
]
