"""The one base error every Visionality module raises, so the CLI and the addons catch one type.

Lower-level exceptions (PyNaCl, binascii, pyarrow, redis, presidio) are wrapped at the module
boundary; only these escape. The CLI prints ``diagnostics()`` once (pattern: sigstore/errors.py).
"""

from __future__ import annotations

__all__ = [
    "VisionalityError",
    "ConfigError",
    "EnvelopeError",
    "RevokedError",
    "BudgetExceeded",
    "BudgetUnavailable",
    "PricingError",
    "PiiBlocked",
    "PiiScanError",
    "LedgerError",
    "LedgerUnavailable",
    "VerificationError",
    "RequestRejected",
]


class VisionalityError(Exception):
    """Base error. ``diagnostics()`` is the text a person reads."""

    def diagnostics(self) -> str:
        return str(self)


class ConfigError(VisionalityError):
    """The deployment home or its config file is missing or invalid."""


class EnvelopeError(VisionalityError):
    """A key envelope failed to parse or verify (HTTP 401)."""


class RevokedError(VisionalityError):
    """A valid envelope whose key or subject has been revoked (HTTP 403)."""


class BudgetExceeded(VisionalityError):
    """A reservation does not fit a cap (HTTP 402). Carries what the error body needs."""

    def __init__(self, message: str, *, scope: str, cap: str, remaining: str, period: str) -> None:
        super().__init__(message)
        self.scope = scope
        self.cap = cap
        self.remaining = remaining
        self.period = period


class BudgetUnavailable(VisionalityError):
    """The counter backend (e.g. Redis) cannot be reached: refuse, never allow unmetered (HTTP 503)."""


class PricingError(VisionalityError):
    """No price is known for a model: it cannot be reserved or charged, so it is refused."""


class PiiBlocked(VisionalityError):
    """Personal data or secrets found in what would go upstream (HTTP 400 pii_blocked)."""

    def __init__(self, entities: dict[str, int]) -> None:
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(entities.items()))
        super().__init__(f"request blocked: personal data or secrets detected ({kinds})")
        self.entities = dict(entities)


class PiiScanError(VisionalityError):
    """The scan itself failed (timeout, detector error, undecodable body): fail closed (HTTP 400)."""


class LedgerError(VisionalityError):
    """A ledger operation failed."""


class LedgerUnavailable(LedgerError):
    """The ledger cannot record right now (disk full, unwritable): refuse new calls (HTTP 503)."""


class VerificationError(LedgerError):
    """Ledger verification found a mismatch. The message says where, expected vs got."""


class RequestRejected(VisionalityError):
    """A client request the appliance refuses as malformed (HTTP 4xx with a code)."""

    def __init__(self, status: int, code: str, message: str, err_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.err_type = err_type
