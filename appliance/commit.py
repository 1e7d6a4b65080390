"""The commit record: one row per call, the contract between the wire path and the ledger.

Field list: shared/DESIGN.md "Commit row". Money is Decimal (Parquet decimal128(18, 9) in the
ledger), token counts are ints, timestamps are timezone-aware UTC datetimes. Never holds prompt or
completion text, PII values, provider keys or a usable envelope (only ``key_id`` and
``envelope_digest``, a SHA-256 of the token, which cannot be replayed).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

__all__ = ["Decision", "CommitRecord", "CommitSink", "new_commit_id"]


class Decision(enum.StrEnum):
    ALLOWED = "allowed"  # forwarded and settled with the provider's reported usage
    BLOCKED_AUTH = "blocked_auth"  # 401: missing / invalid / expired envelope
    BLOCKED_REVOKED = "blocked_revoked"  # 403: key or subject revoked
    BLOCKED_BUDGET = "blocked_budget"  # 402: reservation did not fit a cap
    BLOCKED_PII = "blocked_pii"  # 400 pii_blocked (or the scan failed: fail closed)
    BLOCKED_INVALID = "blocked_invalid"  # 400/404/413/415: malformed request, unknown path, too large
    BLOCKED_UNAVAILABLE = "blocked_unavailable"  # 503: ledger or counters unavailable, fail closed
    BLOCKED_PRICE = "blocked_price"  # 400: model has no known price, cannot be reserved
    UPSTREAM_ERROR = "upstream_error"  # forwarded; provider answered an error or the connection failed
    CLIENT_ABORT = "client_abort"  # forwarded; the client went away mid-response, metered as far as seen
    UNSETTLED = "unsettled"  # recovered after a crash: intent without a settlement, charged at reserved


def new_commit_id() -> str:
    """A 128-bit random id, hex. Stable from intent to settlement so recovery can pair them."""
    return secrets.token_hex(16)


@dataclass(slots=True)
class CommitRecord:
    """One call. ``seq`` and ``row_hash`` are assigned by the ledger when the row is appended."""

    commit_id: str
    ts: datetime  # request arrival, UTC
    appliance_id: str
    decision: Decision
    http_status: int
    key_id: str | None = None  # envelope jti
    envelope_digest: str | None = None  # sha256 hex of the token string: identifies, cannot be replayed
    sub: str | None = None
    email: str | None = None
    project: str | None = None
    task: str | None = None
    memo: str | None = None
    url: str | None = None
    cost_center: str | None = None
    gl_code: str | None = None
    provider: str | None = None  # "openai" | "anthropic"
    endpoint: str | None = None  # "chat.completions" | "responses" | "embeddings" | "messages" | path
    model: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    reserved_usd: Decimal = Decimal("0")
    latency_ms: float | None = None
    ttft_ms: float | None = None
    pii_entities: dict[str, int] = field(default_factory=dict)  # entity type -> count, never values
    upstream_request_id: str | None = None
    trace_id: str | None = None  # x-portkey-trace-id or x-request-id echoed to the client
    error_code: str | None = None  # our error code for refusals, e.g. "budget_exceeded"
    seq: int | None = None  # leaf index in this appliance's stream, set by the ledger
    row_hash: str | None = None  # hex RFC 6962 leaf hash of the canonical row, set by the ledger

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


class CommitSink(Protocol):
    """What the wire path writes into. The ledger (visionality.ledger) is the durable implementation.

    ``append_intent`` returns once the intent is durable (fsynced, group commit): it is awaited
    before a call is forwarded upstream, so a crash cannot lose a call that reached the provider.
    ``append`` writes the final row so that readers see it immediately; durability follows within
    the group-commit interval and is not awaited on the request path.
    Both raise ``LedgerUnavailable`` when the ledger cannot record (the caller answers 503).
    """

    async def append_intent(self, record: CommitRecord) -> None: ...

    def append(self, record: CommitRecord) -> int: ...
