"""Digit-run candidates: CREDIT_CARD, US_SSN, US_BANK_ROUTING, UK_NHS and PHONE_NUMBER.

The pre-pass hands over a run of digit groups ("call 555-123-4567 2 times" arrives as one run). We first test
the whole run, then its contiguous sub-runs of groups, longest first, so two numbers typed next to each other
are both found. Each type has a cheap shape test before its (Presidio) checksum or ``phonenumbers`` check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers.phonenumberutil import NumberParseException

from .context import has_context
from .findings import Finding
from .presidio_validators import PresidioValidators

__all__ = ["PHONE_REGIONS", "NumericDetector"]

# Regions tried for national-format numbers (no "+"). Presidio's default is 8 regions and runs a full
# PhoneNumberMatcher per region over the whole text -- 87% of its time (notes/pii-presidio.md). We parse only
# candidate spans, and only in the regions whose trunk prefix / numbering plan the span's shape allows.
PHONE_REGIONS: Final[tuple[str, ...]] = ("GB", "DE", "FR", "NL", "IT", "ES")
_NANP: Final = "US"  # phonenumbers validates any NANP member (CA, ...) when parsing with region US

_CARD_WORDS: Final = ("card", "visa", "mastercard", "amex", "discover", "jcb", "diners", "maestro", "pan", "cc")
_SSN_WORDS: Final = ("ssn", "social security", "social sec")
_ROUTING_WORDS: Final = ("routing", "aba", "rtn", "transit", "ach", "wire", "bank")
_NHS_WORDS: Final = ("nhs", "national health", "chi number", "health service")
_PHONE_WORDS: Final = (
    "phone", "tel", "mobile", "cell", "call", "fax", "contact", "whatsapp", "sms", "text me", "dial",
    "telefon", "handy", "portable", "numéro", "telefono", "móvil", "bellen", "ring",
)  # fmt: skip

_DIGITS: Final = re.compile(r"\d+")
_EXTENSION: Final = re.compile(r"[ ]?(?:x|ext\.?|#)[ ]?(\d{1,6})$")
# ABA routing numbers: the first two digits are a Federal Reserve district (01-12), thrift (21-32), electronic
# (61-72) or traveller's cheque (80) prefix (ABA Routing Number Policy, "Routing number structure").
_ROUTING_PREFIXES: Final = frozenset(
    [f"{i:02d}" for i in range(0, 13)] + [str(i) for i in range(21, 33)] + [str(i) for i in range(61, 73)] + ["80"]
)


def _card_brand_ok(d: str) -> bool:
    """Issuer ranges (IIN) with their lengths, current as of ISO/IEC 7812 registrations and brand specs.

    Presidio's card regex only allows 4, 5[0-5], 6, 1, 3 prefixes and 4-digit groups, so it misses
    Mastercard 2221-2720, 19-digit Visa and 15-digit JCB (presidio PR #2075); this table is the fix.
    """
    n = len(d)
    p2, p3, p4, p6 = int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":  # Visa 13/16/19 (19-digit Visa since 2013)
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard, incl. the 2-series (2017)
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 in (1800, 2131):  # 15-digit JCB
        return n == 15
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 2200 <= p4 <= 2204:  # Mir
        return 16 <= n <= 19
    if p2 == 62 or p2 == 81:  # UnionPay
        return 16 <= n <= 19
    if p2 == 50 or 56 <= p2 <= 69 or p4 in (604, 6390):  # Maestro (incl. 0604), RuPay 60/65, Verve 506/650
        return 12 <= n <= 19
    return d.startswith("0604") and 12 <= n <= 19


@dataclass(frozen=True, slots=True)
class _Run:
    start: int
    end: int
    digits: str
    lens: tuple[int, ...]
    seps: tuple[str, ...]
    international: bool
    paren: bool
    extension: str


class NumericDetector:
    """Validates digit-run candidates; holds only immutable state, so it is safe to share across threads."""

    def __init__(self, validators: PresidioValidators, phone_regions: Sequence[str] = PHONE_REGIONS) -> None:
        self._v = validators
        self._regions = tuple(phone_regions)
        # phonenumbers loads each region's metadata lazily on first use; do it now, not on a request.
        for region in (_NANP, *self._regions):
            example = phonenumbers.example_number(region)
            if example is not None:
                phonenumbers.is_valid_number(example)

    def detect(self, text: str, start: int, end: int, wanted: frozenset[str]) -> list[Finding]:
        span = text[start:end]
        extension = ""
        m = _EXTENSION.search(span)
        if m:
            extension = m.group(1)
            span = span[: m.start()]
        groups = [(start + g.start(), start + g.end()) for g in _DIGITS.finditer(span)]
        if not groups:
            return []
        whole = self._run(text, groups, 0, len(groups) - 1, extension)
        found = self._classify(text, whole, wanted)
        if found or len(groups) == 1:
            return found
        # Sub-runs, longest first; a sub-run overlapping an accepted one is skipped.
        subs = [
            (i, j)
            for i in range(len(groups))
            for j in range(i, len(groups))
            if (i, j) != (0, len(groups) - 1) and 8 <= sum(e - s for s, e in groups[i : j + 1]) <= 19
        ]
        subs.sort(key=lambda ij: -sum(e - s for s, e in groups[ij[0] : ij[1] + 1]))
        used = [False] * len(groups)
        for i, j in subs:
            if any(used[i : j + 1]):
                continue
            hits = self._classify(text, self._run(text, groups, i, j, extension if j == len(groups) - 1 else ""), wanted)
            if hits:
                found.extend(hits)
                for k in range(i, j + 1):
                    used[k] = True
        return found

    @staticmethod
    def _run(text: str, groups: list[tuple[int, int]], i: int, j: int, extension: str) -> _Run:
        s, e = groups[i][0], groups[j][1]
        lead = text[max(0, s - 2) : s]
        international = lead.endswith("+")
        paren = lead.endswith("(")
        if international:
            s -= 2 if lead == "(+" else 1
        elif paren:
            s -= 1
        if e < len(text) and text[e] == ")":
            e += 1
        seps = tuple(text[groups[k][1] : groups[k + 1][0]] for k in range(i, j))
        digits = "".join(text[a:b] for a, b in groups[i : j + 1])
        return _Run(s, e, digits, tuple(b - a for a, b in groups[i : j + 1]), seps, international, paren, extension)

    def _classify(self, text: str, run: _Run, wanted: frozenset[str]) -> list[Finding]:
        out: list[Finding] = []
        n = len(run.digits)
        uniform = len(set(run.seps)) <= 1
        sep = run.seps[0] if run.seps else ""
        if "CREDIT_CARD" in wanted and not run.international and not run.paren:
            score = self._card(text, run, n, uniform, sep)
            if score:
                out.append(Finding("CREDIT_CARD", run.start, run.end, score))
                return out  # a valid card is not also a phone or an NHS number
        if "US_SSN" in wanted and uniform and not run.international and not run.paren:
            score = self._ssn(text, run, sep)
            if score:
                out.append(Finding("US_SSN", run.start, run.end, score))
        if "US_BANK_ROUTING" in wanted and uniform and not run.international and not run.paren:
            score = self._routing(text, run, sep)
            if score:
                out.append(Finding("US_BANK_ROUTING", run.start, run.end, score))
        if "UK_NHS" in wanted and uniform and not run.international and not run.paren and n == 10:
            score = self._nhs(text, run, sep)
            if score:
                out.append(Finding("UK_NHS", run.start, run.end, score))
        if "PHONE_NUMBER" in wanted and not out:
            score = self._phone(text, run, n)
            if score:
                end = run.end
                if run.extension:
                    end = text.find(run.extension, end) + len(run.extension)
                out.append(Finding("PHONE_NUMBER", run.start, end, score))
        return out

    def _card(self, text: str, run: _Run, n: int, uniform: bool, sep: str) -> float:
        if not 12 <= n <= 19 or not uniform or sep not in ("", " ", "-"):
            return 0.0
        # Printed cards group 4-4-4-4(-3), 4-6-5 (Amex) or 4-6-4 (Diners): no group but the last is short.
        if len(run.lens) > 1 and any(not 4 <= g <= 6 for g in run.lens[:-1]):
            return 0.0
        if not self._v.luhn_ok(run.digits):
            return 0.0
        if _card_brand_ok(run.digits):
            return 1.0
        # Luhn passes for one number in ten: without a known issuer range it needs a card word nearby.
        return 0.7 if has_context(text, run.start, _CARD_WORDS) else 0.3

    def _ssn(self, text: str, run: _Run, sep: str) -> float:
        if run.lens == (3, 2, 4) and sep in ("-", " ", "."):
            base = 0.5  # Presidio's "SSN5 (medium)" pattern score
        elif run.lens == (9,):
            base = 0.05  # Presidio's "SSN4 (very weak)": any 9-digit number; needs a label
        else:
            return 0.0
        if self._v.ssn_invalid(text[run.start : run.end]) or run.digits[0] == "9":
            return 0.0  # Presidio's rules, plus: the SSA never issues area 9xx (those are ITINs)
        if has_context(text, run.start, _SSN_WORDS):
            return min(1.0, base + 0.55)
        return base

    def _routing(self, text: str, run: _Run, sep: str) -> float:
        if not (run.lens == (9,) or (run.lens == (4, 4, 1) and sep == "-")):
            return 0.0
        if run.digits[:2] not in _ROUTING_PREFIXES or not self._v.aba_ok(run.digits):
            return 0.0
        # One random 9-digit number in ten passes the ABA checksum: a label is what makes it a routing number.
        return 0.9 if has_context(text, run.start, _ROUTING_WORDS) else 0.3

    def _nhs(self, text: str, run: _Run, sep: str) -> float:
        if not (run.lens == (10,) or (run.lens == (3, 3, 4) and sep in (" ", "-"))):
            return 0.0
        if not self._v.nhs_ok(run.digits):
            return 0.0
        # The NHS prints numbers 3-3-4 with spaces; a bare or dashed 10-digit number is as likely a phone
        # number or an epoch timestamp, and one in eleven of those passes mod-11.
        base = 0.6 if sep == " " else 0.3
        return min(1.0, base + 0.4) if has_context(text, run.start, _NHS_WORDS) else base

    def _phone(self, text: str, run: _Run, n: int) -> float:
        if not 7 <= n <= 15 or any(g < 2 for g in run.lens[1:]):
            return 0.0
        if len(run.lens) >= 3 and set(run.seps) <= {"-", "/", "."} and (run.lens[0] == 4 or run.lens[-1] == 4):
            if all(g <= 2 for g in run.lens[1:-1]) and (run.lens[0] == 4) != (run.lens[-1] == 4):
                return 0.0  # 2024-01-15, 15/01/2024, 15.01.2024: dates, not phones
        candidate = text[run.start : run.end]
        if run.extension:
            candidate = f"{candidate} ext. {run.extension}"
        if run.international:
            regions: tuple[str | None, ...] = (None,)
        elif run.digits[0] == "0":
            regions = self._regions  # national trunk prefix 0 (EU numbering plans)
        elif (n == 10 and run.digits[0] in "23456789") or (n == 11 and run.digits[0] == "1"):
            regions = (_NANP,)
        else:
            return 0.0
        shaped = run.international or run.paren or bool(run.extension) or len(run.lens) >= 2
        best = 0.0
        for region in regions:
            try:
                number = phonenumbers.parse(candidate, region)
            except NumberParseException:
                continue
            # is_valid_number() first looks the region up among all regions sharing the country code (25
            # for NANP) -- 80% of its cost; we already know the one or two regions that matter.
            if region is None:
                check = (phonenumbers.region_code_for_country_code(number.country_code),)
            else:
                check = ("US", "CA") if region == _NANP else (region,)
            if any(phonenumbers.is_valid_number_for_region(number, r) for r in check):
                best = 0.85 if shaped else 0.45
                break
            if best == 0.0 and phonenumbers.is_possible_number(number):
                best = 0.55 if shaped else 0.3
        if best and has_context(text, run.start, _PHONE_WORDS):
            best = min(1.0, best + 0.3)
        return best
