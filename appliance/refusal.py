"""Turning a refusal into what an SDK understands: an OpenAI-style JSON error body.

Shape: ``{"error": {"message", "type", "code", "param"}}`` (OpenAI API reference, "Error codes"),
which both the OpenAI and the Anthropic SDKs surface as an ``APIStatusError`` with the message, so a
user sees why their call was refused. Every refusal is also a commit row with its decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .commit import Decision
from .errors import (
    BudgetExceeded,
    BudgetUnavailable,
    EnvelopeError,
    LedgerUnavailable,
    PiiBlocked,
    PiiScanError,
    PricingError,
    RequestRejected,
    RevokedError,
    VisionalityError,
)
from .revocation import RevocationUnavailable

__all__ = ["Refusal", "refusal_for", "internal_error"]


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    err_type: str
    message: str
    decision: Decision
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.err_type,
            "code": self.code,
            "param": None,
        }
        error.update(self.extra)
        return json.dumps({"error": error}, separators=(",", ":")).encode()


def refusal_for(exc: VisionalityError) -> Refusal:
    """Map our domain errors to HTTP answers (DESIGN.md "Contracts: Errors")."""
    if isinstance(exc, EnvelopeError):
        return Refusal(
            401,
            "invalid_api_key",
            "authentication_error",
            str(exc),
            Decision.BLOCKED_AUTH,
            headers={"www-authenticate": 'Bearer realm="visionality"'},
        )
    if isinstance(exc, RevokedError):
        return Refusal(403, "key_revoked", "permission_error", str(exc), Decision.BLOCKED_REVOKED)
    if isinstance(exc, BudgetExceeded):
        return Refusal(
            402,
            "budget_exceeded",
            "insufficient_quota",
            str(exc),
            Decision.BLOCKED_BUDGET,
            extra={"scope": exc.scope, "cap": exc.cap, "remaining": exc.remaining, "period": exc.period},
        )
    if isinstance(exc, PiiBlocked):
        return Refusal(
            400,
            "pii_blocked",
            "invalid_request_error",
            str(exc),
            Decision.BLOCKED_PII,
            extra={"entities": dict(sorted(exc.entities.items()))},
        )
    if isinstance(exc, PiiScanError):
        return Refusal(
            400,
            "pii_scan_failed",
            "invalid_request_error",
            f"request blocked: the PII pre-flight could not complete ({exc})",
            Decision.BLOCKED_PII,
        )
    if isinstance(exc, PricingError):
        return Refusal(400, "model_not_priced", "invalid_request_error", str(exc), Decision.BLOCKED_PRICE)
    if isinstance(exc, BudgetUnavailable | LedgerUnavailable | RevocationUnavailable):
        return Refusal(
            503,
            "appliance_unavailable",
            "api_error",
            f"refused: the appliance cannot meter or record this call right now ({exc})",
            Decision.BLOCKED_UNAVAILABLE,
            headers={"retry-after": "5"},
        )
    if isinstance(exc, RequestRejected):
        return Refusal(exc.status, exc.code, exc.err_type, str(exc), Decision.BLOCKED_INVALID)
    return internal_error(exc)


def internal_error(exc: BaseException) -> Refusal:
    """A failure inside the appliance: refuse (fail closed). The message never carries request data."""
    return Refusal(
        500,
        "appliance_error",
        "api_error",
        f"refused: internal appliance error ({type(exc).__name__}); the call was not forwarded",
        Decision.BLOCKED_UNAVAILABLE,
    )
