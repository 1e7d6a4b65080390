"""EMAIL_ADDRESS and IP_ADDRESS scoring on top of Presidio's validators.

IP policy (docs/pii.md): public addresses identify a host and often a person (GDPR recital 30) -> 0.95.
Private/shared ranges (RFC 1918, RFC 6598, fc00::/7) identify internal hosts only -> 0.4, below the default
threshold, so blocking them is an opt-in (threshold 0.4). Loopback, unspecified, link-local, multicast and the
documentation ranges (RFC 5737, RFC 3849) identify nobody and are never reported.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from .context import ContextWords
from .presidio_validators import PresidioValidators

__all__ = ["email_score", "ip_score"]

_VERSION_WORDS: Final = ContextWords(["version", "release", "build", "ver", "firmware", "sdk", "api level"])
# PEP 440 comparison operators: what follows them in a requirements line is a version.
_VERSION_OPERATORS: Final = frozenset({"==", ">=", "<=", "~=", "!="})
_DOC_NETS: Final = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
_SHARED_NET: Final = ipaddress.ip_network("100.64.0.0/10")


def email_score(text: str, start: int, end: int, validators: PresidioValidators) -> float:
    """1.0 for an address whose domain ends in a public suffix (Presidio's tldextract check, offline)."""
    if text.startswith(":", end) and end + 1 < len(text) and not text[end + 1].isspace():
        return 0.0  # "git@github.com:org/repo.git": an scp-style SSH remote, not a mailbox
    return 1.0 if validators.email_ok(text[start:end]) else 0.0


def ip_score(text: str, start: int, end: int) -> float:
    candidate = text[start:end]
    if ":" in candidate and "::" not in candidate and candidate.count(":") != 7 and "." not in candidate:
        return 0.0  # "10:23:45", MAC addresses: not IPv6 (needs eight groups or "::")
    if ":" in candidate and not any(c.isdigit() for c in candidate.replace("::", "")):
        return 0.0  # "Add::add", "dead::beef": C++ scopes and hex words parse as IPv6, but are not addresses
    # Presidio's IpRecognizer.invalidate_result is exactly ``ipaddress.ip_interface`` failing; we call it once
    # here and keep the parsed value instead of parsing twice.
    try:
        address = ipaddress.ip_interface(candidate).ip
    except ValueError:
        return 0.0
    if start > 0 and text[start - 1] in "vV":
        return 0.0
    if text[max(0, start - 2) : start] in _VERSION_OPERATORS:
        return 0.0  # "torch==2.1.0.1", "numpy>=1.26.4.2": a PEP 440 version specifier
    if _VERSION_WORDS.found_before(text, start, window=24):
        return 0.0  # "version 4.2.10.1": four-part version numbers parse as IPv4
    if address.is_loopback or address.is_unspecified or address.is_link_local or address.is_multicast:
        return 0.0
    if any(address in net for net in _DOC_NETS if net.version == address.version):
        return 0.0
    if address.version == 4 and address.is_reserved:
        return 0.0
    if address.is_private or (address.version == 4 and address in _SHARED_NET):
        return 0.4
    return 0.95
