"""Digit-run candidates: CREDIT_CARD, US_SSN, US_BANK_ROUTING, UK_NHS and PHONE_NUMBER.

The pre-pass hands over a run of digit groups ("call 555-123-4567 2 times" arrives as one run). We first test
the whole run, then its contiguous sub-runs of groups, longest first, so two numbers typed next to each other
are both found. Each type has a cheap shape test before its (Presidio) checksum or ``phonenumbers`` check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import phonenumbers
from phonenumbers.phonenumberutil import NumberParseException

from .context import ContextWords, context_before
from .findings import Finding
from .presidio_validators import PresidioValidators

__all__ = ["PHONE_REGIONS", "NumericDetector"]

# Regions tried for national-format numbers (no "+"). Presidio's default is 8 regions and runs a full
# PhoneNumberMatcher per region over the whole text -- 87% of its time (notes/pii-presidio.md). We parse only
# candidate spans, and only in the regions whose trunk prefix / numbering plan the span's shape allows.
PHONE_REGIONS: Final[tuple[str, ...]] = ("GB", "DE", "FR", "NL", "IT", "ES")
_NANP: Final = "US"  # phonenumbers validates any NANP member (CA, ...) when parsing with region US

_VERSION_WORDS: Final = ContextWords(["version", "release", "build", "ver", "firmware", "sdk"])
_CARD_WORDS: Final = ContextWords(
    ["card", "cards", "credit card", "visa", "mastercard", "amex", "discover", "jcb", "diners", "maestro", "pan", "cc"]
)
_SSN_WORDS: Final = ContextWords(["ssn", "ssns", "social security", "social security number", "social sec"])
_ROUTING_WORDS: Final = ContextWords(["routing", "aba", "rtn", "transit", "ach", "wire", "bank", "routing number"])
_NHS_WORDS: Final = ContextWords(["nhs", "nhs number", "nhs no", "national health service", "chi number"])
# Presidio's list plus the labels we saw in other languages, minus "call" and "contact": "API call" and
# "contact us" are everywhere in developer prompts.
_PHONE_WORDS: Final = ContextWords([
    "phone", "phones", "phone number", "telephone", "tel", "mobile", "cell", "cellphone", "fax", "whatsapp",
    "sms", "call me", "text me", "ring me", "dial", "telefon", "telefonnummer", "handy", "portable",
    "téléphone", "tél", "telefono", "cellulare", "móvil", "movil", "contact number",
])  # fmt: skip

# How NANP numbers are written: 2125550123, 212 555 0123, (212) 555-0123, 1-212-555-0123, 212-5550123.
_NANP_GROUPINGS: Final = frozenset({(10,), (3, 3, 4), (1, 3, 3, 4), (11,), (3, 7), (1, 10)})
_DIGITS: Final = re.compile(r"\d+")
# Unix time in milliseconds from 2001-09-09 to 2036-07-18: thirteen bare digits led by "1", which no issuer
# range of a 13-digit card starts with (Visa 4, Maestro 50/56-69); 1 in 10 pass Luhn, and logs are full of them.
_EPOCH_MS_LOW: Final = 1_000_000_000_000
_EPOCH_MS_HIGH: Final = 2_100_000_000_000
# The most digit groups a sub-run may have: "+33 (0)1 23 45 67 89" is seven.
_MAX_GROUPS: Final = 7
_FOUR_DIGITS: Final = re.compile(r"\d{4}")
_TRUNK_OR_LEAD: Final = re.compile(r"(?<!\d)0|[+(]")
# Where the separators of a printed card are (after 4, 8, 12, 16 digits; Amex/Diners after 4 and 10).
_CARD_CUTS_4: Final = frozenset({4, 8, 12, 16})
_CARD_CUTS_AMEX: Final = frozenset({4, 10})
# A day-month-year or year-month-day date inside a run, same separator twice.
_DATE: Final = re.compile(r"(?<!\d)(?:\d{1,2}([/.\-])\d{1,2}\1\d{4}|\d{4}([/.\-])\d{1,2}\2\d{1,2})(?!\d)")
# A hex dump line: an offset of 7-8 hex digits, ":" (xxd) or two spaces (hexdump -C, od -A x), then bytes in
# groups of two or four hex digits.
_HEX_DUMP_LINE: Final = re.compile(r"[ \t]*[0-9a-fA-F]{7,8}(?::|  ) ?[0-9a-fA-F]{2}(?:[0-9a-fA-F]{2})? [0-9a-fA-F]{2}")
# Hex dump lines are at most ~80 characters: a run further than this from a line start is on no such line.
_HEX_DUMP_WIDTH: Final = 100
_CARD_SEPARATOR: Final = re.compile(r"[ \t\-]{1,3}")
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
    if p2 == 35:  # JCB 3528-3589; BIN tables (and Faker) use the whole 35 range
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


# Group layouts of the fixed-format numbers: SSN 3-2-4, NHS 3-3-4, routing 4-4-1, and the bare forms.
_FIXED_LAYOUTS: Final = frozenset({(3, 2, 4), (3, 3, 4), (4, 4, 1), (9,), (10,)})


def _on_hex_dump_line(text: str, start: int) -> bool:
    """Whether ``start`` is on a line that begins like a hex dump (looked for at most _HEX_DUMP_WIDTH back)."""
    lo = max(0, start - _HEX_DUMP_WIDTH)
    line_start = text.rfind("\n", lo, start) + 1
    if line_start == 0 and lo > 0:
        return False  # the line is longer than any hex dump line
    return _HEX_DUMP_LINE.match(text, line_start) is not None


def _card_grouping_ok(lens: Sequence[int]) -> bool:
    """Printed cards group 4-4-4-4(-3), 4-6-5 (Amex) or 4-6-4 (Diners): no group but the last is short.

    A separator may be missing ("5425\u200b2334 3010 9903" once the zero-width space is folded away), but the
    ones present must sit where a printed card has them.
    """
    if len(lens) == 1 or all(4 <= g <= 6 for g in lens[:-1]):
        return True
    cuts = set(accumulate(lens[:-1]))
    return cuts <= _CARD_CUTS_4 or cuts <= _CARD_CUTS_AMEX


def _layout_possible(lens: tuple[int, ...], n: int, phone_marked: bool) -> bool:
    """Whether some detector could accept digit groups of these lengths (``_classify``'s shape gates, cheaply).

    ``phone_marked``: a "+", "(", trunk "0" or phone word makes any phone layout possible.
    """
    if 12 <= n <= 19 and _card_grouping_ok(lens):
        return True  # a card
    if lens in _FIXED_LAYOUTS or lens in _NANP_GROUPINGS:
        return True
    return phone_marked and 7 <= n <= 15


@dataclass(slots=True)
class _Run:
    start: int
    end: int
    digits: str
    lens: tuple[int, ...]
    seps: tuple[str, ...]
    international: bool
    paren: bool
    extension: str
    context: str | None = None  # the normalised label window, cut once on first use


def _labelled(words: ContextWords, text: str, run: _Run) -> bool:
    if run.context is None:
        run.context = context_before(text, run.start)
    return words.found_in(run.context)


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

    def detect(self, text: str, start: int, end: int, floors: Mapping[str, float]) -> list[Finding]:
        """Findings in the digit run ``text[start:end]`` for the detectors in ``floors`` (entity -> threshold).

        A reading that cannot reach its detector's threshold is not validated at all (that is where the time
        goes: one ``phonenumbers`` parse costs 40-60 us here).
        """
        span = text[start:end]
        extension = ""
        m = _EXTENSION.search(span)
        if m:
            extension = m.group(1)
            span = span[: m.start()]
        if _FOUR_DIGITS.search(span) is None:
            # Only groups of one to three digits ("12 34 56", "1 2-3.4", "123 456 789"): no card, SSN, NHS or
            # routing layout, only a phone number, and that needs a trunk "0", a "+"/"(" or a label -- and is no
            # longer than seven groups: a longer row of small numbers is a table (checked in C, before any
            # Python per group).
            if len(_DIGITS.findall(span)) > _MAX_GROUPS:
                return []
            if "PHONE_NUMBER" not in floors or (
                _TRUNK_OR_LEAD.search(span) is None and not _PHONE_WORDS.found_before(text, start)
            ):
                return []
        groups = [(start + g.start(), start + g.end()) for g in _DIGITS.finditer(span)]
        if not groups:
            return []
        if len(groups) == 2 and text[groups[0][1] : groups[1][0]] in (".", ","):
            if groups[0][1] - groups[0][0] < 12 or groups[1][1] - groups[1][0] > 2:
                return []  # "53.916326", "1,234": a decimal number, none of the five types
            # "5425233430109903.0": a JSON float (or an amount) whose integer part is a card number.
            return self._classify(text, self._run(text, groups, 0, 0, ""), floors)
        whole = self._run(text, groups, 0, len(groups) - 1, extension)
        found = self._classify(text, whole, floors)
        if found or len(groups) == 1:
            return found
        found.extend(self._sub_runs(text, groups, extension, floors, _labelled(_PHONE_WORDS, text, whole)))
        return found

    def _sub_runs(
        self,
        text: str,
        groups: list[tuple[int, int]],
        extension: str,
        floors: Mapping[str, float],
        phone_label: bool,
    ) -> list[Finding]:
        """Findings in the sub-runs of groups, longest first; a sub-run overlapping an accepted one is skipped.

        Linear in the number of groups: a sub-run has at most ``_MAX_GROUPS`` groups, and only starts that can
        begin some entity's layout are tried (a red-team "12 34 56 ..." table took 87 ms per 4 KB when every
        window of every length was classified). ``phone_label`` is whether the run as a whole has a phone word
        before it: a sub-run's label can only come from there (a run holds no words).
        """
        count = len(groups)
        lens = [e - s for s, e in groups]
        digits_before = [0]
        for g in lens:
            digits_before.append(digits_before[-1] + g)
        # Split only where the run has whitespace: "0.16469.1823" inside "10.0.16469.1823" is no token.
        cut = [k == 0 or text[groups[k - 1][1] : groups[k][0]].isspace() for k in range(count)] + [True]
        subs: list[tuple[int, int, int]] = []  # (-digits, first group, last group)
        for i in range(count):
            if not cut[i]:
                continue
            s = groups[i][0]
            lead = text[s - 1 : s] in ("+", "(")
            trunk = text[s] == "0"
            if phone_label or lead or trunk:
                most = _MAX_GROUPS  # any phone layout: "+33 (0)1 23 45 67 89", "06 12 34 56 78"
            elif lens[i] >= 4:
                most = 5  # a card, 4-4-4-4-3; routing 4-4-1; a bare number
            elif lens[i] == 3:
                most = 3  # SSN 3-2-4, NHS / NANP 3-3-4, NANP 3-7
            elif lens[i] == 1 and text[s] == "1":
                most = 4  # NANP 1-212-555-0123
            else:
                continue  # "12 34 56": two digits without a trunk "0", a "+" or a label begin no layout
            for j in range(i, min(count, i + most)):
                n = digits_before[j + 1] - digits_before[i]
                if n > 19:
                    break
                if n >= 8 and cut[j + 1] and (i, j) != (0, count - 1):
                    if _layout_possible(tuple(lens[i : j + 1]), n, phone_label or lead or trunk):
                        subs.append((-n, i, j))
        subs.sort()
        found: list[Finding] = []
        used = [False] * count
        for _, i, j in subs:
            if any(used[i : j + 1]):
                continue
            sub = self._run(text, groups, i, j, extension if j == count - 1 else "")
            hits = self._classify(text, sub, floors)
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

    def _classify(self, text: str, run: _Run, wanted: Mapping[str, float]) -> list[Finding]:
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
        # A weak NHS/routing reading (score < 0.5) must not hide the phone reading of the same digits.
        if "PHONE_NUMBER" in wanted and (not any(f.score >= 0.5 for f in out) or _labelled(_PHONE_WORDS, text, run)):
            score = self._phone(text, run, n, wanted["PHONE_NUMBER"])
            if score:
                end = run.end
                if run.extension:
                    end = text.find(run.extension, end) + len(run.extension)
                out.append(Finding("PHONE_NUMBER", run.start, end, score))
        return out

    def _card(self, text: str, run: _Run, n: int, uniform: bool, sep: str) -> float:
        if not 12 <= n <= 19:
            return 0.0
        if not _card_grouping_ok(run.lens):
            return 0.0
        # Spaces and dashes, mixed or doubled ("5425 2334-3010 9903", "5425  2334"), or dots between exact
        # groups of four ("5425.2334.3010.9903"; looser dotted layouts are versions and amounts).
        if not all(_CARD_SEPARATOR.fullmatch(s) for s in run.seps):
            if not (uniform and sep == "." and all(g == 4 for g in run.lens)):
                return 0.0
        if not self._v.luhn_ok(run.digits):
            return 0.0
        if _card_brand_ok(run.digits):
            return 1.0
        if len(run.lens) == 1 and _EPOCH_MS_LOW <= int(run.digits) < _EPOCH_MS_HIGH:
            return 0.0  # "ts_ms=1708277712094": a millisecond timestamp, and no issuer uses these prefixes
        # Luhn passes for one number in ten: without a known issuer range it needs a card word nearby.
        return 0.7 if _labelled(_CARD_WORDS, text, run) else 0.3

    def _ssn(self, text: str, run: _Run, sep: str) -> float:
        if run.lens == (3, 2, 4) and sep in ("-", " ", "."):
            base = 0.5  # Presidio's "SSN5 (medium)" pattern score
        elif run.lens == (9,):
            base = 0.05  # Presidio's "SSN4 (very weak)": any 9-digit number; needs a label
        else:
            return 0.0
        if self._v.ssn_invalid(text[run.start : run.end]) or run.digits[0] == "9":
            return 0.0  # Presidio's rules, plus: the SSA never issues area 9xx (those are ITINs)
        if _labelled(_SSN_WORDS, text, run):
            return min(1.0, base + 0.55)
        return base

    def _routing(self, text: str, run: _Run, sep: str) -> float:
        if not (run.lens == (9,) or (run.lens == (4, 4, 1) and sep == "-")):
            return 0.0
        if run.digits[:2] not in _ROUTING_PREFIXES or not self._v.aba_ok(run.digits):
            return 0.0
        # One random 9-digit number in ten passes the ABA checksum: a label is what makes it a routing number.
        return 0.9 if _labelled(_ROUTING_WORDS, text, run) else 0.3

    def _nhs(self, text: str, run: _Run, sep: str) -> float:
        if not (run.lens == (10,) or (run.lens == (3, 3, 4) and sep in (" ", "-"))):
            return 0.0
        if not self._v.nhs_ok(run.digits):
            return 0.0
        # The NHS prints numbers 3-3-4 with spaces; a bare or dashed 10-digit number is as likely a phone
        # number or an epoch timestamp, and one in eleven of those passes mod-11.
        base = 0.6 if sep == " " else 0.3
        return min(1.0, base + 0.4) if _labelled(_NHS_WORDS, text, run) else base

    @staticmethod
    def _ceiling(run: _Run, n: int) -> float:
        """The score of a *valid* number in this layout, before any label bonus."""
        if run.international:
            return 0.85
        if len(run.lens) == 1:
            # Unseparated digits: a valid national number with the trunk "0" is still a phone to a European
            # reader; ten NANP digits without a label are as often an id.
            return 0.6 if run.digits[0] == "0" and n >= 10 else 0.45
        if len(run.lens) == 2 and not (run.paren or run.extension):
            # Short numbers in two groups ("05955-8574") are valid somewhere in Germany's open numbering plan
            # and equally often case or batch numbers: a label is needed.
            return 0.85 if n >= 10 else 0.45
        return 0.85

    def _phone(self, text: str, run: _Run, n: int, floor: float) -> float:
        # Single digits only near the front: "+33 1 ..", "+49 (0) ..", "1 (800) ..". Elsewhere they are lists.
        if not 7 <= n <= 15 or any(g < 2 for g in run.lens[3:]):
            return 0.0
        if len(run.lens) >= 3 and set(run.seps) <= {"-", "/", "."} and (run.lens[0] == 4 or run.lens[-1] == 4):
            if all(g <= 2 for g in run.lens[1:-1]) and (run.lens[0] == 4) != (run.lens[-1] == 4):
                return 0.0  # 2024-01-15, 15/01/2024, 15.01.2024: dates, not phones
        if "." in run.seps and any(not 2 <= g <= 4 for g in run.lens[1:]):
            return 0.0  # "10.0.19045.3693", "3.14159": dotted phones group digits in twos to fours
        if text[run.start - 1 : run.start] == "#":
            return 0.0  # "order #70755620", "#91966821": an order or ticket number, never how a phone is written
        if "." in run.seps and _VERSION_WORDS.found_before(text, run.start, window=24):
            return 0.0  # "version 10.22.156"
        candidate = text[run.start : run.end]
        if _DATE.search(candidate):
            return 0.0  # "01/15/2024 09" (before ":00 AM"): a date and the hour after it
        if _on_hex_dump_line(text, run.start):
            return 0.0  # "00000010  00 12 34 56 78 ...": byte values on an `xxd`/`hexdump -C` line
        if run.extension:
            candidate = f"{candidate} ext. {run.extension}"
        labelled = _labelled(_PHONE_WORDS, text, run)
        if run.international:
            regions: tuple[str | None, ...] = (None,)
        elif run.digits[0] == "0":
            regions = self._regions  # national trunk prefix 0 (EU numbering plans)
        elif run.lens in _NANP_GROUPINGS and run.digits[-10] in "23456789":
            regions = (_NANP,)
        elif n <= 12 and labelled:
            # Labelled but in no recognisable layout (Italian mobiles "3..", Spanish "6.."): any configured
            # plan; the label is what makes it a phone number.
            regions = (_NANP, *self._regions)
        else:
            return 0.0
        if self._ceiling(run, n) + (0.3 if labelled else 0.0) < floor:
            return 0.0  # cannot reach the threshold whatever phonenumbers says: skip the parse
        best = 0.0
        for region in regions:
            try:
                number = phonenumbers.parse(candidate, region)
            except NumberParseException:
                continue
            # is_valid_number() first looks the region up among all regions sharing the country code (25
            # for NANP) -- 80% of its cost; we already know the one or two regions that matter.
            check: tuple[str, ...]
            if region is None:
                check = (phonenumbers.region_code_for_country_code(number.country_code or 0),)
            else:
                check = ("US", "CA") if region == _NANP else (region,)
            if any(phonenumbers.is_valid_number_for_region(number, r) for r in check):
                best = self._ceiling(run, n)
                break
            if best == 0.0 and phonenumbers.is_possible_number(number):
                # Only the length is plausible: trust the layout only when it has three or more groups or
                # an international / area-code marker ("05955-8574" is as likely a case number).
                strong = run.international or run.paren or bool(run.extension) or len(run.lens) >= 3
                best = 0.55 if strong else 0.3
        if best and labelled:
            best = min(1.0, best + 0.3)
        return best
