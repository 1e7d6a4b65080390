"""Presidio's validation logic, used as validators on candidate spans, offline and fail-closed.

We keep Presidio's checks (Luhn, NHS mod-11, ABA checksum, SSN invalidation rules, tldextract TLD check, and for
IBAN its mod-97 rule with its country format table; ``ipaddress`` for IPs) but not its scanning loop:
``AnalyzerEngine.analyze`` runs ~17 regexes plus ``phonenumbers`` over the whole text (~30 ms/KB here,
notes/pii-presidio.md). Our pre-pass finds the candidate spans; only those reach these validators.

Two Presidio behaviours are unsafe on a security path and are neutralised here:

- ``EmailRecognizer.validate_result`` calls ``tldextract.extract``, whose module-level extractor downloads the
  Public Suffix List on first use. We point tldextract at its bundled snapshot before Presidio imports it and
  replace the module-level extractor with one that has no URLs and no disk cache (no network, ever).
- ``PatternRecognizer`` and ``IbanRecognizer`` catch a regex ``TimeoutError``, log a warning and *skip* the
  pattern (fail-open; presidio_analyzer/pattern_recognizer.py ``__analyze_patterns``). ``SwallowedTimeoutGuard``
  turns that warning into a ``PiiScanError`` for the request being scanned.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Final

from ..errors import PiiScanError

# Must happen before tldextract is first imported (it reads the variable when it builds its module-level
# extractor); an empty value means "no remote suffix list", so the bundled snapshot is used.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import tldextract  # noqa: E402
import tldextract.tldextract  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    AbaRoutingRecognizer,
    CreditCardRecognizer,
    EmailRecognizer,
    IpRecognizer,
    NhsRecognizer,
    UsSsnRecognizer,
)
from presidio_analyzer.predefined_recognizers.generic.iban_patterns import regex_per_country  # noqa: E402

__all__ = ["PresidioValidators", "SwallowedTimeoutGuard", "make_tldextract_offline"]

_PRESIDIO_LOGGER: Final = "presidio-analyzer"
# Presidio's IBAN country formats (ISO 13616 registry), upper-case only as in IbanRecognizer's "True" branch.
_IBAN_FORMATS: Final = {country: re.compile(pattern) for country, pattern in regex_per_country.items()}


_OFFLINE_EXTRACTOR: Final = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def make_tldextract_offline() -> None:
    """Replace tldextract's module-level extractor by one that never fetches the suffix list nor writes a cache.

    Needed even with the environment variable set, because an earlier import of tldextract (by any package)
    would already have built the default extractor with the two public URLs.
    """
    if tldextract.tldextract.TLD_EXTRACTOR is not _OFFLINE_EXTRACTOR:
        tldextract.tldextract.TLD_EXTRACTOR = _OFFLINE_EXTRACTOR


class SwallowedTimeoutGuard(logging.Handler):
    """Counts Presidio's "timed out ... skipping" warnings per thread so a scan can fail closed on them."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if "timed out" in record.getMessage():
            self._local.count = getattr(self._local, "count", 0) + 1

    def reset(self) -> None:
        self._local.count = 0

    def raise_if_tripped(self) -> None:
        """Raise if a Presidio regex timed out (and was skipped) on this thread since ``reset``."""
        if getattr(self._local, "count", 0):
            self._local.count = 0
            raise PiiScanError("PII scan failed closed: a Presidio pattern timed out and would have been skipped")

    @classmethod
    def install(cls) -> SwallowedTimeoutGuard:
        """Attach one guard to Presidio's logger (idempotent) and make sure its warnings reach it."""
        logger = logging.getLogger(_PRESIDIO_LOGGER)
        for handler in logger.handlers:
            if isinstance(handler, cls):
                return handler
        guard = cls()
        logger.addHandler(guard)
        # A logger level above WARNING would drop the record before any handler sees it.
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
        return guard


class PresidioValidators:
    """One instance of each Presidio recognizer whose validation we reuse; stateless, so thread-safe."""

    def __init__(self) -> None:
        make_tldextract_offline()
        self.guard = SwallowedTimeoutGuard.install()
        self._card = CreditCardRecognizer()
        self._nhs = NhsRecognizer()
        self._aba = AbaRoutingRecognizer()
        self._ssn = UsSsnRecognizer()
        self._ip = IpRecognizer()
        self._email = EmailRecognizer()
        # Warm everything that loads lazily (the suffix-list trie) so the first request pays nothing.
        self.email_ok("warm@example.co.uk")

    # Each check below first runs a plain-Python equivalent and only asks Presidio when that passes: a miss
    # costs ~2 us instead of 20-50 us, and every hit is still confirmed by Presidio's own code. The pre-checks
    # never reject what Presidio accepts (tests/test_pii_presidio_validators.py compares them on random input).

    def luhn_ok(self, digits: str) -> bool:
        return _luhn(digits) and bool(self._card.validate_result(digits))

    def iban_ok(self, candidate: str) -> bool:
        # validate_result returns None for a lower-case IBAN whose upper-case form is valid: not a hit.
        # Presidio's own rule -- check digits (ISO 7064 MOD 97-10) plus its per-country format table -- but
        # with the table compiled once: IbanRecognizer.validate_result recompiles the country regex on every
        # call (0.2 ms per IBAN here). tests/test_pii_presidio_validators.py checks both agree.
        compact = candidate.replace(" ", "").replace("-", "")
        if not (_mod97(compact) and compact[2:4].isdigit() and 2 <= int(compact[2:4]) <= 98):
            return False
        country_format = _IBAN_FORMATS.get(compact[:2])
        return country_format is not None and country_format.match(compact) is not None

    def nhs_ok(self, digits: str) -> bool:
        return _mod11(digits) and bool(self._nhs.validate_result(digits))

    def aba_ok(self, digits: str) -> bool:
        return _aba(digits) and bool(self._aba.validate_result(digits))

    def ssn_invalid(self, candidate: str) -> bool:
        return bool(self._ssn.invalidate_result(candidate))

    def ip_invalid(self, candidate: str) -> bool:
        return bool(self._ip.invalidate_result(candidate))

    def email_ok(self, candidate: str) -> bool:
        return bool(self._email.validate_result(candidate))


def _luhn(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B (Luhn)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mod97(iban: str) -> bool:
    """ISO 13616 / ISO 7064 MOD 97-10: move the first four characters to the end, letters A=10..Z=35."""
    if len(iban) < 5 or not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _mod11(digits: str) -> bool:
    """NHS number check: weights 10..1 over all ten digits sum to a multiple of 11 (NHS Data Dictionary)."""
    return len(digits) == 10 and sum(int(c) * w for c, w in zip(digits, range(10, 0, -1), strict=True)) % 11 == 0


def _aba(digits: str) -> bool:
    """ABA routing number checksum: 3-7-1 weights, sum a multiple of 10 (ABA Routing Number Policy)."""
    return len(digits) == 9 and sum(int(c) * w for c, w in zip(digits, (3, 7, 1) * 3, strict=True)) % 10 == 0
