"""``visionality ledger`` commands through click's CliRunner, on a deployment home in tmp_path."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from visionality.cli import cli
from visionality.home import Home
from visionality.ledger.checkpoint import parse_note
from visionality.ledger.cli import ledger_group

from .test_ledger_ledger import KEY, ledger, record


def _home(root: Path) -> Home:
    (root / "keys").mkdir(parents=True)
    (root / "visionality.toml").write_text("# placeholder for the ledger CLI tests\n")
    seed_pk = bytes(KEY) + bytes(KEY.verify_key)
    (root / "keys" / "signing.paserk").write_text("k4.secret." + base64.urlsafe_b64encode(seed_pk).decode().rstrip("="))
    return Home(root)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = _home(tmp_path / "home")

    async def fill() -> None:
        led = ledger(h.ledger_dir, "node-1")
        await led.start()
        for i in range(3):
            led.append(record("node-1", project=f"P{i % 2}", cost_usd=Decimal("0.25")))
        await led.close()
        led = ledger(h.ledger_dir, "node-1")
        await led.start()
        led.append(record("node-1", project="P9", cost_usd=Decimal("1.5")))  # stays in the WAL
        await led.flush()
        await led.close()

    asyncio.run(fill())
    return h


def run(home: Home, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(ledger_group, list(args), obj=home)
    return result.exit_code, result.output


def test_query_csv_default(home: Home) -> None:
    code, out = run(home, "query", "SELECT project, sum(cost_usd) AS spent FROM commits GROUP BY 1 ORDER BY 1")
    assert code == 0, out
    assert list(csv.reader(io.StringIO(out))) == [
        ["project", "spent"],
        ["P0", "0.500000000"],
        ["P1", "0.250000000"],
        ["P9", "1.500000000"],
    ]


def test_query_json_and_table(home: Home) -> None:
    code, out = run(home, "query", "SELECT seq, cost_usd FROM commits ORDER BY seq LIMIT 2", "--format", "json")
    assert code == 0, out
    assert json.loads(out) == [{"seq": 0, "cost_usd": "0.250000000"}, {"seq": 1, "cost_usd": "0.250000000"}]
    code, out = run(home, "query", "SELECT seq FROM commits ORDER BY seq LIMIT 1", "--format", "table")
    assert code == 0 and out.splitlines() == ["seq", "---", "0"]


def test_query_refuses_writes(home: Home) -> None:
    code, out = run(home, "query", "COPY (SELECT 1) TO 'x.csv'")
    assert code != 0 and "read-only" in out


def test_verify_ok_and_with_exported_checkpoint(home: Home, tmp_path: Path) -> None:
    code, out = run(home, "verify")
    assert code == 0, out
    assert "ok commits/node-1: 4 sealed rows in 2 files" in out
    code, note = run(home, "checkpoint", "--export")
    assert code == 0, note
    cp = parse_note(note).verify("visionality.ledger/node-1/commits", KEY.verify_key)
    assert cp.tree_size == 4
    (tmp_path / "witness.note").write_text(note)
    code, out = run(home, "verify", "--checkpoint", str(tmp_path / "witness.note"))
    assert code == 0 and "consistent with external checkpoint visionality.ledger/node-1/commits@4" in out


def test_verify_names_the_tampered_file_and_seq(home: Home) -> None:
    f = sorted(home.ledger_dir.glob("commits/date=*/*.parquet"))[0]
    table = pq.read_table(f, schema=pq.read_schema(f))
    costs = table.column("cost_usd").to_pylist()
    costs[1] = Decimal("0.01")
    os.chmod(f, 0o644)
    pq.write_table(table.set_column(26, table.schema.field(26), pa.array(costs, table.schema.field(26).type)), f)
    code, out = run(home, "verify")
    assert code == 1
    assert "verification FAILED" in out and f.name in out and "seq 1" in out and "expected" in out


def test_checkpoint_summary(home: Home) -> None:
    code, out = run(home, "checkpoint")
    assert code == 0 and "commits/node-1: origin visionality.ledger/node-1/commits tree size 4" in out


def test_tail_no_follow(home: Home) -> None:
    code, out = run(home, "tail", "--no-follow", "--since-seq", "1")
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in lines] == [2, 3] and lines[-1]["cost_usd"] == "1.500000000"


def test_through_the_root_command(home: Home) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home.root), "ledger", "query", "SELECT count(*) AS n FROM commits"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["n", "4"]


def test_missing_home_is_a_clean_error(tmp_path: Path) -> None:
    code, out = run(Home(tmp_path / "nowhere"), "verify")
    assert code == 1 and "no Visionality deployment" in out


def test_verify_takes_one_witness_checkpoint_per_stream(home: Home, tmp_path: Path) -> None:
    """Several nodes: each stream's witness copy is checked in one run; a deleted stream is caught by its."""
    import shutil

    async def node2() -> None:
        led = ledger(home.ledger_dir, "node-2")
        await led.start()
        led.append(record("node-2", cost_usd=Decimal("2")))
        await led.close()

    asyncio.run(node2())
    notes = []
    for node in ("node-1", "node-2"):
        code, note = run(home, "checkpoint", "--export", "--stream", node)
        assert code == 0, note
        notes.append(tmp_path / f"{node}.note")
        notes[-1].write_text(note)
    code, out = run(home, "verify", "--checkpoint", str(notes[0]), "--checkpoint", str(notes[1]))
    assert code == 0, out
    assert "node-1/commits@4" in out and "node-2/commits@1" in out
    shutil.rmtree(home.ledger_dir / "streams" / "commits" / "node-2")  # an admin removes a whole node
    for f in home.ledger_dir.glob("commits/date=*/node-2-*.parquet"):
        f.unlink()
    code, out = run(home, "verify")
    assert code == 0  # nothing inside the ledger says node-2 ever existed ...
    code, out = run(home, "verify", "--checkpoint", str(notes[0]), "--checkpoint", str(notes[1]))
    assert code == 1 and "node-2/commits" in out and "no such stream" in out  # ... its witness does
