"""Sealing one stream: write-once files, signed manifest chain, checkpoints, crash leftovers."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from visionality.errors import LedgerError
from visionality.ledger.canonical import COMMIT_SCHEMA, encode_commit
from visionality.ledger.merkle import CompactRange, leaf_hash
from visionality.ledger.stream import (
    PendingRow,
    SealedState,
    StreamPaths,
    check_stream_id,
    load_state,
    parse_file_name,
    quarantine_orphans,
    read_manifest,
    seal_rows,
)

from .test_ledger_ledger import KEY, record

ORIGIN = "visionality.ledger/n1/commits"


def _rows(first: int, n: int, day: str = "2026-12-03") -> list[PendingRow]:
    out = []
    for seq in range(first, first + n):
        line = encode_commit(record(), seq=seq, origin=ORIGIN, recorded_at=f"{day}T10:00:00.{seq:06d}Z")
        out.append((line, leaf_hash(line).hex(), day))
    return out


def test_seal_writes_once_and_chains_the_manifest(tmp_path: Path) -> None:
    paths = StreamPaths(tmp_path, "commits", "n1")
    state = SealedState()
    first = seal_rows(paths, state, _rows(0, 5), origin=ORIGIN, signing_key=KEY)
    second = seal_rows(paths, state, _rows(5, 3), origin=ORIGIN, signing_key=KEY)
    assert first == ["commits/date=2026-12-03/n1-000000000000-000000000004.parquet"]
    assert second == ["commits/date=2026-12-03/n1-000000000005-000000000007.parquet"]
    f = tmp_path / first[0]
    assert stat.S_IMODE(f.stat().st_mode) == 0o444
    assert pq.read_schema(f).remove_metadata().equals(COMMIT_SCHEMA)
    entries = read_manifest(paths.manifest)
    assert entries[0].data["prev"] == "0" * 64 and entries[1].data["prev"] == entries[0].hash
    resumed = load_state(paths, writable=False)
    assert resumed.tree.size == 8 and resumed.tree.root() == state.tree.root()
    with pytest.raises(LedgerError, match="expected seq"):
        seal_rows(paths, state, _rows(9, 1), origin=ORIGIN, signing_key=KEY)


def test_rows_across_midnight_become_one_file_per_day(tmp_path: Path) -> None:
    paths = StreamPaths(tmp_path, "commits", "n1")
    state = SealedState()
    rows = _rows(0, 2, "2026-12-03") + _rows(2, 2, "2026-12-04")
    end = CompactRange()
    end.extend(bytes.fromhex(r[1]) for r in rows)
    written = seal_rows(paths, state, rows, origin=ORIGIN, signing_key=KEY, end_tree=end)
    assert [w.split("/")[1] for w in written] == ["date=2026-12-03", "date=2026-12-04"]
    assert state.tree.root() == end.root()


def test_half_sealed_file_is_quarantined(tmp_path: Path) -> None:
    paths = StreamPaths(tmp_path, "commits", "n1")
    state = SealedState()
    (written,) = seal_rows(paths, state, _rows(0, 3), origin=ORIGIN, signing_key=KEY)
    # A crash between the rename and the manifest append: the file exists, the manifest does not know it.
    paths.manifest.unlink()
    paths.checkpoints.unlink()
    moved = quarantine_orphans(paths, 0)
    assert len(moved) == 1 and moved[0].parent == tmp_path / "quarantine" / "commits"
    assert not (tmp_path / written).exists()


def test_torn_manifest_line_is_dropped(tmp_path: Path) -> None:
    paths = StreamPaths(tmp_path, "commits", "n1")
    state = SealedState()
    seal_rows(paths, state, _rows(0, 3), origin=ORIGIN, signing_key=KEY)
    with open(paths.manifest, "ab") as f:
        f.write(b'{"v":1,"kind":"comm')
    assert load_state(paths, writable=True).tree.size == 3
    assert paths.manifest.read_bytes().endswith(b"\n")


def test_names() -> None:
    assert parse_file_name("node-1-000000000010-000000000019.parquet") == ("node-1", 10, 19)
    assert parse_file_name("x.parquet") is None
    with pytest.raises(LedgerError):
        check_stream_id("../escape")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("lsattr") is None, reason="chattr +i needs root")
def test_immutable_files_as_root(tmp_path: Path) -> None:
    paths = StreamPaths(tmp_path, "commits", "n1")
    (written,) = seal_rows(paths, SealedState(), _rows(0, 2), origin=ORIGIN, signing_key=KEY, immutable=True)
    f = tmp_path / written
    try:
        flags = subprocess.run(["lsattr", str(f)], capture_output=True, text=True).stdout.split()[0]
        if "i" not in flags:
            pytest.skip("filesystem without the immutable attribute")
        with pytest.raises(PermissionError):
            os.unlink(f)
    finally:
        subprocess.run(["chattr", "-i", str(f)], check=False)
        subprocess.run(["chattr", "-a", str(paths.manifest), str(paths.checkpoints)], check=False)


def test_large_runs_are_sealed_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import visionality.ledger.stream as stream_module
    from visionality.ledger import verify

    monkeypatch.setattr(stream_module, "_CHUNK_BYTES", 3000)  # a few rows per chunk
    paths = StreamPaths(tmp_path, "commits", "n1")
    (written,) = seal_rows(paths, SealedState(), _rows(0, 40), origin=ORIGIN, signing_key=KEY)
    meta = pq.ParquetFile(tmp_path / written).metadata
    assert meta.num_rows == 40 and meta.num_row_groups > 3
    verify(tmp_path, public_keys={"*": KEY.verify_key})
