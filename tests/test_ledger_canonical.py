"""Canonical row encoding: exact, float-free, identical from Python, Arrow and DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.json as pa_json
import pytest
from visionality.commit import CommitRecord, Decision
from visionality.errors import LedgerError
from visionality.ledger.canonical import (
    COMMIT_SCHEMA,
    canonical_from_values,
    canonical_sql,
    decode_commit,
    encode_commit,
    format_time,
)
from visionality.ledger.merkle import leaf_hash

ORIGIN = "visionality.ledger/n1/commits"
STAMP = "2026-12-03T10:00:00.000001Z"


def _record(**kw: object) -> CommitRecord:
    base: dict[str, object] = dict(
        commit_id="c" * 32,
        ts=datetime(2026, 12, 3, 9, 59, 59, 500000, tzinfo=UTC),
        appliance_id="n1",
        decision=Decision.ALLOWED,
        http_status=200,
        project="PROJ",
        task="PROJ-128",
        sub="alice@corp",
        model="gpt-4o",
        cost_usd=Decimal("0.0012345"),
        reserved_usd=Decimal("0.05"),
        latency_ms=812.25,
        input_tokens=100,
        output_tokens=20,
        pii_entities={"PHONE": 1, "EMAIL_ADDRESS": 2},
    )
    base.update(kw)
    return CommitRecord(**base)  # type: ignore[arg-type]


def test_encoding_is_sorted_compact_and_float_free() -> None:
    line = encode_commit(_record(), seq=7, origin=ORIGIN, recorded_at=STAMP)
    obj = json.loads(line)
    assert list(obj) == sorted(obj)
    assert b" " not in line.replace(b"gpt-4o", b"")
    assert obj["cost_usd"] == "0.001234500" and obj["reserved_usd"] == "0.050000000"
    assert obj["latency_ms"] == "812.250" and obj["ttft_ms"] is None
    assert obj["ts"] == "2026-12-03T09:59:59.500000Z"
    assert obj["pii_entities"] == '{"EMAIL_ADDRESS":2,"PHONE":1}'
    assert obj["seq"] == 7 and obj["origin"] == ORIGIN and obj["recorded_at"] == STAMP
    assert "row_hash" not in obj


def test_money_edges() -> None:
    enc = lambda v: json.loads(encode_commit(_record(cost_usd=v), seq=0, origin=ORIGIN, recorded_at=STAMP))  # noqa: E731
    assert enc(Decimal("-0"))["cost_usd"] == "0.000000000"
    assert enc(Decimal("1E-9"))["cost_usd"] == "0.000000001"
    assert enc(Decimal("0.0000000015"))["cost_usd"] == "0.000000002"  # banker's rounding at 9 places
    with pytest.raises(LedgerError):
        enc(Decimal("1E+10"))


def test_times_are_utc_and_naive_times_refused() -> None:
    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 1, 1, 1, 0, tzinfo=paris)) == "2026-01-01T00:00:00.000000Z"
    with pytest.raises(LedgerError):
        encode_commit(_record(ts=datetime(2026, 1, 1)), seq=0, origin=ORIGIN, recorded_at=STAMP)


def test_decode_round_trip() -> None:
    rec = _record(memo="naïve ✓", stream=True, error_code="x")
    back = decode_commit(encode_commit(rec, seq=-1, origin=ORIGIN, recorded_at=STAMP))
    assert back.cost_usd == Decimal("0.001234500") and back.memo == "naïve ✓" and back.stream
    assert back.pii_entities == rec.pii_entities and back.ts == rec.ts


def _arrow(lines: list[bytes]) -> pa.Table:
    schema = pa.schema([f for f in COMMIT_SCHEMA if f.name != "row_hash"])
    return pa_json.read_json(
        pa.py_buffer(b"\n".join(lines)),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    ).select(schema.names)


TRICKY = [
    _record(),
    _record(memo='quote " backslash \\ slash / tab\t newline\n', url="https://x.example/ü?q=1&r=ø"),
    _record(memo="emoji 🚀 and \u2028 line separator", cost_usd=Decimal("0"), latency_ms=None),
    _record(decision=Decision.BLOCKED_PII, http_status=400, pii_entities={}, cost_usd=Decimal("-1.5")),
]


@pytest.mark.parametrize("i", range(len(TRICKY)))
def test_arrow_round_trip_reproduces_the_bytes(i: int) -> None:
    line = encode_commit(TRICKY[i], seq=i, origin=ORIGIN, recorded_at=STAMP)
    row = _arrow([line]).to_pylist()[0]
    assert canonical_from_values("commits", row) == line


def test_duckdb_recipe_reproduces_the_leaf() -> None:
    lines = [encode_commit(r, seq=i, origin=ORIGIN, recorded_at=STAMP) for i, r in enumerate(TRICKY)]
    table = _arrow(lines)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    got = con.sql(f"SELECT sha256('\\x00'::BLOB || encode({canonical_sql('commits')})) FROM t ORDER BY seq").fetchall()
    assert [g[0] for g in got] == [leaf_hash(line).hex() for line in lines]


def test_duckdb_recipe_differs_only_in_hex_case_for_control_characters() -> None:
    line = encode_commit(_record(memo="unit separator \x1f"), seq=0, origin=ORIGIN, recorded_at=STAMP)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", _arrow([line]))
    ((text,),) = con.sql(f"SELECT {canonical_sql('commits')} FROM t").fetchall()
    assert text != line.decode() and text.lower() == line.decode().lower()


@pytest.mark.parametrize("i", range(len(TRICKY)))
def test_fast_encoder_equals_the_json_reference(i: int) -> None:
    from visionality.ledger.canonical import canonical_json, commit_values

    kw = dict(seq=i, origin=ORIGIN, recorded_at=STAMP)
    assert encode_commit(TRICKY[i], **kw) == canonical_json(commit_values(TRICKY[i], **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("field,value", [("project", 123), ("input_tokens", "12"), ("input_tokens", True)])
def test_wrong_types_fail_on_the_caller(field: str, value: object) -> None:
    with pytest.raises(LedgerError, match=field):
        encode_commit(_record(**{field: value}), seq=0, origin=ORIGIN, recorded_at=STAMP)
