"""Read path: DuckDB views over sealed files and WAL rows, read-only, consistent while sealing."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from visionality.commit import Decision
from visionality.errors import LedgerError
from visionality.ledger import EventLog, open_views, run_query

from .test_ledger_ledger import KEY, ledger, record


def test_empty_ledger_has_both_views(tmp_path: Path) -> None:
    con = open_views(tmp_path)
    assert run_query(con, "SELECT count(*) FROM commits")[1] == [(0,)]
    assert run_query(con, "SELECT count(*) FROM events")[1] == [(0,)]


def test_refusal_is_queryable_the_moment_append_returns(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path, seal_max_age_s=3600)
        await led.start()
        led.append(record(decision=Decision.BLOCKED_PII, http_status=400, pii_entities={"EMAIL_ADDRESS": 1}))
        cols, got = run_query(open_views(tmp_path), "SELECT decision, pii_entities, date, row_hash FROM commits")
        assert got[0][:2] == ("blocked_pii", '{"EMAIL_ADDRESS":1}') and len(got[0][3]) == 64
        assert str(got[0][2]) == got[0][2].isoformat()  # a DATE, same as the hive partition column
        await led.close()

    asyncio.run(main())


def test_types_are_exact(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        led.append(record(cost_usd=Decimal("0.000000001"), latency_ms=1.5))
        await led.close()
        led2 = ledger(tmp_path)
        await led2.start()
        led2.append(record(cost_usd=Decimal("0.000000002")))  # one sealed row, one WAL row
        sql = "SELECT typeof(cost_usd), typeof(ts), typeof(input_tokens), typeof(stream), typeof(latency_ms), "
        sql += "sum(cost_usd) OVER () FROM commits"
        got = run_query(open_views(tmp_path), sql)[1]
        assert got[0][:5] == ("DECIMAL(18,9)", "TIMESTAMP WITH TIME ZONE", "BIGINT", "BOOLEAN", "DECIMAL(18,3)")
        assert got[0][5] == Decimal("0.000000003")
        await led2.close()

    asyncio.run(main())


def test_snapshots_never_lose_or_duplicate_rows_while_sealing(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path, seal_max_rows=7)
        await led.start()
        for round_no in range(15):
            for _ in range(5):
                led.append(record())
            await asyncio.sleep(0.03)
            got = run_query(open_views(tmp_path), "SELECT count(*), count(DISTINCT seq), max(seq) FROM commits")[1]
            n = (round_no + 1) * 5
            assert got == [(n, n, n - 1)]
        await led.close()

    asyncio.run(main())


def test_events_view(tmp_path: Path) -> None:
    EventLog(tmp_path, writer_id="cli", signing_key=KEY).append("key.revoked", key_id="k1", reason="leaver")
    got = run_query(open_views(tmp_path), "SELECT kind, json_extract_string(fields, '$.reason') FROM events")[1]
    assert got == [("key.revoked", "leaver")]


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '/tmp/visionality-ledger-x.csv'",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; SELECT 2",
        "SET threads = 1",
        "ATTACH ':memory:' AS other",
        "INSTALL httpfs",
        # EXPLAIN ANALYZE runs the statement it explains: DuckDB types it EXPLAIN, not COPY.
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/visionality-ledger-x.csv'",
        "EXPLAIN SELECT 1",
        # Reading past the ledger: the host's files are not the query's business.
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/root/**')",
        "SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/visionality-ledger-y.csv''')",
    ],
)
def test_query_path_is_read_only(tmp_path: Path, sql: str) -> None:
    with pytest.raises(LedgerError):
        run_query(open_views(tmp_path), sql)
    assert not Path("/tmp/visionality-ledger-x.csv").exists() and not Path("/tmp/visionality-ledger-y.csv").exists()


def test_views_read_only_manifested_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A Parquet file dropped into a partition by hand (forged or copied) changes no total."""
    import shutil

    async def main() -> None:
        led = ledger(tmp_path, seal_max_rows=2)
        await led.start()
        for _ in range(2):
            led.append(record(cost_usd=Decimal("1.5")))
        await led.close()

    asyncio.run(main())
    (sealed,) = list((tmp_path / "commits").glob("date=*/*.parquet"))
    shutil.copy(sealed, sealed.with_name("zz-forged-000000000000-000000000001.parquet"))
    with caplog.at_level("WARNING", logger="visionality.ledger"):
        got = run_query(open_views(tmp_path), "SELECT count(*), sum(cost_usd) FROM commits")[1]
    assert got == [(2, Decimal("3.000000000"))]
    assert "in no manifest" in caplog.text and "zz-forged" in caplog.text


def test_configuration_is_locked(tmp_path: Path) -> None:
    con = open_views(tmp_path)
    with pytest.raises(Exception, match="locked"):
        con.execute("SET enable_external_access = true")
