"""What a scan reports: entity types and spans, never the matched values.

The ledger and the HTTP error carry entity types and counts only (DESIGN.md, "Contracts"), so a ``Finding``
deliberately has no ``text`` field: nothing downstream can log a value by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["ENTITY_TYPES", "Finding"]

# The twelve detectors of issue 5, in the order the docs list them.
ENTITY_TYPES: Final[tuple[str, ...]] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "US_BANK_ROUTING",
    "UK_NINO",
    "UK_NHS",
    "API_KEY",
    "AWS_ACCESS_KEY",
    "PRIVATE_KEY",
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected entity: its type, its span in the scanned text, and a confidence score in [0, 1]."""

    entity_type: str
    start: int
    end: int
    score: float
