from __future__ import annotations

import dataclasses
from datetime import UTC
from decimal import Decimal

from visionality.commit import CommitRecord, Decision, new_commit_id


def test_commit_ids_are_random_128_bit_hex() -> None:
    ids = {new_commit_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_record_defaults_are_money_safe_and_text_free() -> None:
    r = CommitRecord(commit_id="c", ts=CommitRecord.now(), appliance_id="n", decision=Decision.ALLOWED, http_status=200)
    assert r.ts.tzinfo is UTC
    assert isinstance(r.cost_usd, Decimal) and isinstance(r.reserved_usd, Decimal)
    names = {f.name for f in dataclasses.fields(CommitRecord)}
    # The ledger never holds prompt/completion text, provider keys or a usable envelope (DESIGN.md).
    assert not names & {"prompt", "messages", "completion", "api_key", "token", "envelope", "body"}
    required = {
        "seq",
        "commit_id",
        "ts",
        "appliance_id",
        "decision",
        "http_status",
        "key_id",
        "sub",
        "email",
        "project",
        "task",
        "memo",
        "url",
        "cost_center",
        "gl_code",
        "provider",
        "endpoint",
        "model",
        "stream",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost_usd",
        "reserved_usd",
        "latency_ms",
        "ttft_ms",
        "pii_entities",
        "upstream_request_id",
        "row_hash",
    }
    assert required <= names


def test_decisions_are_stable_strings() -> None:
    assert Decision.BLOCKED_BUDGET == "blocked_budget" and Decision("unsettled") is Decision.UNSETTLED
