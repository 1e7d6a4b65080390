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
