from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from visionality.assembly import spend_by_bucket
from visionality.commit import CommitRecord, Decision
from visionality.config import Config

from .inprocess import appliance, make_home, run


def test_spend_rebuilt_from_ledger_per_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            for cost, key, project in (("0.10", "k1", "P"), ("0.25", "k1", "P"), ("1.00", "k2", None)):
                rec = CommitRecord(
                    commit_id=cost + key,
                    ts=datetime.now(UTC),
                    appliance_id="node-1",
                    decision=Decision.ALLOWED,
                    http_status=200,
                    key_id=key,
                    project=project,
                    cost_usd=Decimal(cost),
                )
                app.ledger.append(rec)
            await app.ledger.flush()

    run(go)
    now = datetime.now(UTC)
    spent = spend_by_bucket(Config.load(home), now)
    month = now.strftime("%Y-%m")
    assert spent["key:k1:total"] == Decimal("0.35") and spent[f"key:k1:{month}"] == Decimal("0.35")
    assert spent["project:P:total"] == Decimal("0.35") and spent["key:k2:total"] == Decimal("1.00")
    assert not any(k.startswith("project:None") for k in spent)


def test_restart_restores_counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_home(tmp_path)

    async def first() -> None:
        async with appliance(home, monkeypatch) as app:
            app.ledger.append(
                CommitRecord(
                    commit_id="c1",
                    ts=datetime.now(UTC),
                    appliance_id="node-1",
                    decision=Decision.ALLOWED,
                    http_status=200,
                    key_id="kx",
                    cost_usd=Decimal("0.42"),
                )
            )

    async def second() -> None:
        from visionality.budget import Cap

        async with appliance(home, monkeypatch) as app:
            (status,) = await app.counters.status([Cap("key", "kx", Decimal("1"), "total")], datetime.now(UTC))
            assert status.spent == Decimal("0.42") and status.remaining == Decimal("0.58")

    run(first)
    run(second)


def test_each_start_records_the_config_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from visionality.ledger.views import open_views

    home = make_home(tmp_path)

    async def start() -> None:
        async with appliance(home, monkeypatch):
            pass

    run(start)
    (home.config_path).write_text(home.config_path.read_text() + "\n# edited\n")
    run(start)
    con = open_views(home.ledger_dir)
    try:
        digests = [
            r[0]
            for r in con.execute(
                "SELECT json_extract_string(fields, '$.config_sha256') FROM events "
                "WHERE kind = 'config_loaded' ORDER BY seq"
            ).fetchall()
        ]
    finally:
        con.close()
    assert len(digests) == 2 and digests[0] != digests[1]
    assert digests[1] == hashlib.sha256(home.config_path.read_bytes()).hexdigest()


def test_redis_that_restarts_empty_mid_run_is_reseeded_from_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis without persistence comes back empty: the next call is refused (503, never unmetered) and the
    appliance rebuilds the counters from the ledger by itself, instead of refusing until a restart."""
    import asyncio

    import redis as sync_redis
    from visionality.budget import Cap
    from visionality.errors import BudgetUnavailable

    url = "redis://127.0.0.1:6379/13"  # a database of its own: FLUSHDB here touches no other test
    try:
        sync_redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except sync_redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    sync_redis.Redis.from_url(url).flushdb()
    home = make_home(tmp_path)
    cfg = home.config_path
    cfg.write_text(cfg.read_text().replace('backend = "memory"', f'backend = "{url}"'))
    cap = [Cap("key", "kr", Decimal("1"), "total")]

    async def go() -> None:
        async with appliance(home, monkeypatch) as app:
            app.ledger.append(
                CommitRecord(
                    commit_id="r1",
                    ts=datetime.now(UTC),
                    appliance_id="node-1",
                    decision=Decision.ALLOWED,
                    http_status=200,
                    key_id="kr",
                    cost_usd=Decimal("0.30"),
                )
            )
            await app.ledger.flush()
            sync_redis.Redis.from_url(url).flushdb()  # Redis restarts empty
            with pytest.raises(BudgetUnavailable):
                await app.counters.status(cap, datetime.now(UTC))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if app.seeder.done():
                    break
            (status,) = await app.counters.status(cap, datetime.now(UTC))
            assert status.spent == Decimal("0.30")  # rebuilt from the ledger, not counted from zero

    try:
        run(go)
    finally:
        sync_redis.Redis.from_url(url).flushdb()
