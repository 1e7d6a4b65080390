"""The PII pre-flight scanner the wire path calls for every request. Fails closed.

Build once (``PiiScanner(policy)`` loads Presidio's recognizers, the phone metadata and the suffix list), then
call ``scan_request`` from any thread. Any failure -- a validator exception, the per-request deadline, a body we
cannot read, a Presidio regex timeout that Presidio itself would have skipped -- raises ``PiiScanError``, which
the wire path turns into a refusal: a request we could not scan is never forwarded (issue 5; the peers fail
open, see notes/pii-presidio.md "Peers").
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping
from typing import Final

from ..errors import PiiScanError
from .addresses import email_score, ip_score
from .allow_list import AllowList
from .credentials import api_key_score, aws_key_score, aws_secret_score, jwt_score, pem_end
from .findings import ENTITY_TYPES, Finding
from .identifiers import iban_end, nino_score
from .normalise import fold
from .numeric import NumericDetector
from .policy import DEFAULT_ALLOW_SCOPES, DetectorPolicy, PiiPolicy
from .prepass import iter_candidates
from .presidio_validators import PresidioValidators
from .request_body import iter_request_texts

__all__ = ["PiiScanner"]

# Which detector a pre-pass candidate kind can produce (used to skip disabled detectors cheaply).
_KIND_ENTITIES: Final[Mapping[str, frozenset[str]]] = {
    "pem": frozenset({"PRIVATE_KEY"}),
    "secret": frozenset({"API_KEY"}),
    "jwt": frozenset({"API_KEY"}),
    "aws": frozenset({"AWS_ACCESS_KEY"}),
    "awssecret": frozenset({"AWS_ACCESS_KEY"}),
    "email": frozenset({"EMAIL_ADDRESS"}),
    "iban": frozenset({"IBAN_CODE"}),
    "nino": frozenset({"UK_NINO"}),
    "ipv6": frozenset({"IP_ADDRESS"}),
    "ipv4": frozenset({"IP_ADDRESS"}),
    "num": frozenset({"CREDIT_CARD", "US_SSN", "US_BANK_ROUTING", "UK_NHS", "PHONE_NUMBER"}),
}
# Candidate kinds found last (prepass order) and dropped when inside an already validated value.
_DIGIT_KINDS: Final = frozenset({"num", "ipv4"})
# How often (in candidates) the deadline is checked inside a chunk: a validator costs at most ~0.2 ms
# (a phonenumbers parse), so 16 candidates overrun the deadline by a few milliseconds at worst.
_DEADLINE_EVERY: Final = 16
# Fields are joined with a newline into one text: one pre-pass instead of one per field, and a label in one
# field ("ssn_label": "SSN") still counts as context for the value in the next.
_FIELD_SEPARATOR: Final = "\n"


class PiiScanner:
    """Scans request bodies and texts against a ``PiiPolicy``. Immutable after ``__init__``; thread-safe."""

    def __init__(self, policy: PiiPolicy) -> None:
        try:
            self._validators = PresidioValidators()
            self._numeric = NumericDetector(self._validators)
        except Exception as e:  # presidio/phonenumbers/tldextract setup errors: wrap, never leak
            raise PiiScanError(f"PII scanner could not start: {type(e).__name__}") from e
        self._policy = policy
        self._allow = AllowList(policy.allow_list, DEFAULT_ALLOW_SCOPES)
        self._allow.warm(ENTITY_TYPES)
        self._deadline_s = policy.deadline_ms / 1000.0

    @property
    def policy(self) -> PiiPolicy:
        return self._policy

    def scan_request(self, provider: str, endpoint: str, body: object, project: str | None) -> dict[str, int]:
        """Count the blocking entities in everything the provider would receive; ``{}`` means clean.

        ``provider`` and ``endpoint`` do not narrow the scan: every text in the body is scanned whatever the
        endpoint (see request_body.py). Raises ``PiiScanError`` when the body cannot be fully scanned.
        """
        deadline = time.perf_counter() + self._deadline_s
        texts = list(iter_request_texts(body))
        findings = self._scan(_FIELD_SEPARATOR.join(texts), project, deadline)
        detectors = self._policy.for_project(project)
        counts: dict[str, int] = {}
        for f in findings:
            if detectors[f.entity_type].action == "block":
                counts[f.entity_type] = counts.get(f.entity_type, 0) + 1
        return counts

    def scan_text(self, text: str, project: str | None = None) -> list[Finding]:
        """Findings in ``text`` at or above their detector's threshold, allow-listed values removed.

        Includes detectors whose action is "allow" (they are found, just not blocked). Never logs values.
        """
        if not isinstance(text, str):
            raise PiiScanError(f"PII scan failed closed: expected text, got {type(text).__name__}")
        return self._scan(text, project, time.perf_counter() + self._deadline_s)

    def _scan(self, original: str, project: str | None, deadline: float) -> list[Finding]:
        detectors = self._policy.for_project(project)
        floors = {name: d.threshold for name, d in detectors.items() if d.enabled}
        wanted = frozenset(floors)
        if not wanted or not original:
            return []
        # Zero-width and no-break spaces, en dashes, full-width digits are folded away first (normalise.py),
        # so they cannot hide a value; spans are mapped back to ``original`` at the end.
        folded = fold(original)
        text = folded.text

        def check_deadline() -> None:
            if time.perf_counter() > deadline:
                raise PiiScanError(
                    f"PII scan failed closed: deadline of {self._policy.deadline_ms:g} ms exceeded "
                    f"({len(text)} characters)"
                )

        guard = self._validators.guard
        guard.reset()
        out: list[Finding] = []
        # Spans of validated secrets, IBANs, e-mails, IPv6 addresses: a digit run inside one of them (the
        # "1234567890" of a Slack token, the "3704 0044 ..." of an IBAN) is part of that value, not a phone.
        claimed_starts: list[int] = []
        claimed_ends: list[int] = []
        try:
            for n, (kind, start, end) in enumerate(iter_candidates(text, check_deadline)):
                if n % _DEADLINE_EVERY == 0:
                    check_deadline()
                kinds = _KIND_ENTITIES[kind] & wanted
                if kind in _DIGIT_KINDS:
                    i = bisect.bisect_left(claimed_starts, end) - 1
                    if i >= 0 and claimed_ends[i] > start:
                        continue
                if not kinds:
                    continue
                found = self._validate(text, kind, start, end, floors)
                out.extend(found)
                if kind not in _DIGIT_KINDS:
                    for f in found:
                        if self._allow.allows(f.entity_type, text[f.start : f.end]):
                            # An allow-listed value claims nothing: "5425233430109903@example.com" is an
                            # example address wrapped around a real card number, which must still be found.
                            continue
                        i = bisect.bisect_left(claimed_starts, f.start)
                        claimed_starts.insert(i, f.start)
                        claimed_ends.insert(i, f.end)
            guard.raise_if_tripped()
        except PiiScanError:
            raise
        except Exception as e:  # a validator or regex failure: block rather than forward unscanned
            raise PiiScanError(f"PII scan failed closed: detector error {type(e).__name__}") from e
        kept = [f for f in out if self._keep(f, text, detectors)]
        if text is original:
            return kept
        return [
            Finding(f.entity_type, folded.original_start(f.start), folded.original_end(f.end), f.score) for f in kept
        ]

    def _keep(self, f: Finding, text: str, detectors: Mapping[str, DetectorPolicy]) -> bool:
        return f.score >= detectors[f.entity_type].threshold and not self._allow.allows(
            f.entity_type, text[f.start : f.end]
        )

    def _validate(self, text: str, kind: str, start: int, end: int, floors: Mapping[str, float]) -> list[Finding]:
        v = self._validators
        if kind == "num":
            return self._numeric.detect(text, start, end, {e: floors[e] for e in _KIND_ENTITIES[kind] if e in floors})
        if kind == "email":
            score = email_score(text, start, end, v)
            return [Finding("EMAIL_ADDRESS", start, end, score)] if score else []
        if kind in ("ipv4", "ipv6"):
            score = ip_score(text, start, end)
            return [Finding("IP_ADDRESS", start, end, score)] if score else []
        if kind == "iban":
            iban_stop = iban_end(text, start, end, v)
            return [Finding("IBAN_CODE", start, iban_stop, 1.0)] if iban_stop > 0 else []
        if kind == "nino":
            score = nino_score(text, start, end)
            return [Finding("UK_NINO", start, end, score)] if score else []
        if kind == "secret":
            score = api_key_score(text[start:end])
            return [Finding("API_KEY", start, end, score)] if score else []
        if kind == "jwt":
            score = jwt_score(text[start:end])
            return [Finding("API_KEY", start, end, score)] if score else []
        if kind == "aws":
            score = aws_key_score(text[start:end])
            return [Finding("AWS_ACCESS_KEY", start, end, score)] if score else []
        if kind == "awssecret":
            score = aws_secret_score(text[start:end])
            return [Finding("AWS_ACCESS_KEY", start, end, score)] if score else []
        if kind == "pem":
            stop = pem_end(text, end)
            return [Finding("PRIVATE_KEY", start, stop, 1.0)] if stop > 0 else []
        raise PiiScanError(f"PII scan failed closed: unknown candidate kind {kind!r}")  # pragma: no cover
