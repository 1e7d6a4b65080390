"""verify: every way an admin could tamper is caught, naming the file and seq, expected vs got."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from nacl.signing import SigningKey
from visionality.errors import VerificationError
from visionality.ledger import EventLog, verify
from visionality.ledger.stream import StreamPaths, read_checkpoint_log

from .test_ledger_ledger import KEY, KEYS, crash, ledger, record


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three sealed files of 10 rows (seq 0..29), 5 rows still in the WAL, and an events stream."""
    root = tmp_path_factory.mktemp("ledger")

    async def main() -> None:
        led = ledger(root, seal_max_rows=10, seal_max_age_s=3600, head_interval_s=0.05)
        await led.start()
        for i in range(35):
            led.append(record(cost_usd=Decimal(i) / 1000, memo=f"call {i}"))
            if i % 10 == 9:
                for _ in range(100):
                    await asyncio.sleep(0.02)
                    if led.sealed_size == i + 1:
                        break
        await led.flush()
        for _ in range(100):  # the signed head follows the durable rows within head_interval_s
            await asyncio.sleep(0.02)
            if led._head_size == 35:
                break
        assert led._head_size == 35
        await crash(led)  # leave seq 30..34 in the WAL, no writer holding the stream

    asyncio.run(main())
    events = EventLog(root, writer_id="cli", signing_key=KEY, seal_max_rows=2)
    events.append("key.issued", key_id="k1", sub="alice")
    events.append("key.revoked", key_id="k1", kind="jti")
    events.append("config.changed", by="admin")
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(pristine, copy)
    return copy


def _files(root: Path) -> list[Path]:
    return sorted((root / "commits").glob("date=*/n1-*.parquet"))


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """What an admin does: chmod u+w, rewrite the Parquet file in place."""
    table = pq.read_table(path, schema=pq.read_schema(path))
    os.chmod(path, 0o644)
    pq.write_table(change(table), path)


def _set(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def _expect(root: Path, *patterns: str, external: str | None = None) -> str:
    with pytest.raises(VerificationError) as err:
        verify(root, public_keys=KEYS, external_checkpoint=external)
    message = str(err.value)
    for p in patterns:
        assert p in message, message
    return message


def test_pristine_ledger_verifies(root: Path) -> None:
    report = verify(root, public_keys=KEYS)
    by = {(s.kind, s.stream_id): s for s in report.streams}
    assert by[("commits", "n1")].sealed_rows == 30 and by[("commits", "n1")].wal_rows == 5
    assert by[("commits", "n1")].files == 3 and by[("events", "cli")].sealed_rows == 2
    assert report.rows == 38


def test_changed_cost_in_a_rewritten_file(root: Path) -> None:
    f = _files(root)[1]
    _rewrite(f, lambda t: _set(t, "cost_usd", 3, Decimal("0.000001")))
    _expect(root, f.name, "seq 13", "row hash expected", "got")


def test_changed_cost_with_recomputed_row_hash_breaks_the_signed_root(root: Path) -> None:
    from visionality.ledger.canonical import canonical_from_values
    from visionality.ledger.merkle import leaf_hash

    f = _files(root)[1]

    def forge(t: pa.Table) -> pa.Table:
        t = _set(t, "cost_usd", 3, Decimal("0.000001"))
        row = t.slice(3, 1).to_pylist()[0]
        return _set(t, "row_hash", 3, leaf_hash(canonical_from_values("commits", row)).hex())

    _rewrite(f, forge)
    _expect(root, f.name, "seq 19", "Merkle root at tree size 20 expected", "(signed checkpoint) got")


def test_deleted_row(root: Path) -> None:
    f = _files(root)[1]
    _rewrite(f, lambda t: pa.concat_tables([t.slice(0, 5), t.slice(6)]))
    _expect(root, f.name, "seq 15", "expected seq 15 got 16")


def test_deleted_last_row(root: Path) -> None:
    f = _files(root)[1]
    _rewrite(f, lambda t: t.slice(0, 9))
    _expect(root, f.name, "seq 19", "expected 10 rows")


def test_reordered_rows(root: Path) -> None:
    f = _files(root)[0]
    _rewrite(f, lambda t: t.take(pa.array([1, 0, *range(2, 10)])))
    _expect(root, f.name, "seq 0", "expected seq 0 got 1")


def test_deleted_file(root: Path) -> None:
    f = _files(root)[1]
    os.unlink(f)
    _expect(root, f.name, "seq 10", "file missing")


def test_swapped_files(root: Path) -> None:
    a, b = _files(root)[:2]
    tmp = a.with_suffix(".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    _expect(root, a.name, "seq 0", "expected seq 0 got 10")


def test_appended_forged_file(root: Path) -> None:
    src = _files(root)[2]
    forged = src.parent / "n1-000000000030-000000000039.parquet"
    table = pq.read_table(src, schema=pq.read_schema(src))
    pq.write_table(table.set_column(0, table.schema.field(0), pc.add(table.column("seq"), 10)), forged)
    _expect(root, forged.name, "seq 30", "in no manifest")


def test_forged_file_with_forged_manifest_entry(root: Path) -> None:
    paths = StreamPaths(root, "commits", "n1")
    lines = paths.manifest.read_bytes().splitlines()
    forged = lines[-1].replace(b'"rows":10', b'"rows":11')
    paths.manifest.write_bytes(b"\n".join([*lines[:-1], forged]) + b"\n")
    _expect(root, "manifest.jsonl line 3", "signature does not verify")


def test_manifest_entry_removed_breaks_the_chain(root: Path) -> None:
    paths = StreamPaths(root, "commits", "n1")
    lines = paths.manifest.read_bytes().splitlines()
    paths.manifest.write_bytes(b"\n".join([lines[0], lines[2]]) + b"\n")
    _expect(root, "manifest.jsonl line 2", "prev manifest hash expected")


def test_edited_checkpoint_log(root: Path) -> None:
    paths = StreamPaths(root, "commits", "n1")
    text = paths.checkpoints.read_text()
    line = text.splitlines()[1]
    note_root = line.split("\\n")[2]
    paths.checkpoints.write_text(text.replace(note_root, "A" * 43 + "=", 1))
    _expect(root, "checkpoints.jsonl line 2", "signature by visionality.ledger/n1/commits does not verify")


def test_checkpoint_line_deleted(root: Path) -> None:
    paths = StreamPaths(root, "commits", "n1")
    lines = paths.checkpoints.read_text().splitlines()
    paths.checkpoints.write_text("\n".join(lines[:2]) + "\n")
    _expect(root, "seq 29", "expected a signed checkpoint at tree size 30")


def test_checkpoint_log_reordered(root: Path) -> None:
    paths = StreamPaths(root, "commits", "n1")
    lines = paths.checkpoints.read_text().splitlines()
    paths.checkpoints.write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    _expect(root, "checkpoints.jsonl line 2", "log reordered")


def test_wal_truncated_mid_record(root: Path) -> None:
    (_, seg), *_ = [(p.stat().st_size, p) for p in (root / "streams/commits/n1/wal").glob("*.wal")]
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 30)
    _expect(root, seg.name, "after seq 33", "partial record", "WAL was truncated")


def test_wal_truncated_at_a_record_boundary(root: Path) -> None:
    """CRCs alone cannot tell a WAL cut between two records from a whole one; the signed head can."""
    from visionality.ledger.wal import scan_segment

    seg = next((root / "streams/commits/n1/wal").glob("*.wal"))
    last = scan_segment(seg).records[-1]
    with open(seg, "r+b") as f:
        f.truncate(last.offset)  # seq 34 gone, every remaining record whole
    _expect(root, "head.json", "covers 35 rows", "hold 34", "seq 34 were removed")


def test_wal_row_edited_and_its_crc_recomputed(root: Path) -> None:
    from visionality.ledger.wal import KIND_ROW, frame, scan_segment

    seg = next((root / "streams/commits/n1/wal").glob("*.wal"))
    data = seg.read_bytes()
    rec = [r for r in scan_segment(seg).records if r.kind == KIND_ROW][2]  # seq 32
    forged = rec.payload.replace(b'"cost_usd":"0.032000000"', b'"cost_usd":"0.000001000"')
    assert forged != rec.payload
    end = rec.offset + len(frame(KIND_ROW, rec.payload))
    seg.write_bytes(data[: rec.offset] + frame(KIND_ROW, forged) + data[end:])
    _expect(root, "head.json", "Merkle root at tree size 35", "WAL rows were changed")


def test_wal_deleted(root: Path) -> None:
    shutil.rmtree(root / "streams/commits/n1/wal")
    _expect(root, "head.json", "covers 35 rows", "hold 30")


def test_restart_refuses_a_wal_that_lost_rows_the_head_covered(root: Path) -> None:
    """Recovery would otherwise seal and sign the edited WAL; it refuses to start instead (fail closed)."""
    from visionality.errors import LedgerError
    from visionality.ledger.wal import scan_segment

    seg = next((root / "streams/commits/n1/wal").glob("*.wal"))
    with open(seg, "r+b") as f:
        f.truncate(scan_segment(seg).records[-1].offset)

    async def main() -> None:
        led = ledger(root)
        with pytest.raises(LedgerError, match="signed head covers 35 rows"):
            await led.start()

    asyncio.run(main())


def test_wal_record_cut_out_of_the_middle(root: Path) -> None:
    from visionality.ledger.wal import scan_segment

    seg = next((root / "streams/commits/n1/wal").glob("*.wal"))
    scan = scan_segment(seg)
    data = seg.read_bytes()
    second, third = scan.records[2].offset, scan.records[3].offset  # header, seq 30, seq 31, ...
    seg.write_bytes(data[:second] + data[third:])
    _expect(root, seg.name, "seq 31", "expected seq 31 got 32")


def test_wal_gap_after_sealed_rows(root: Path) -> None:
    from visionality.ledger.wal import scan_segment

    seg = next((root / "streams/commits/n1/wal").glob("*.wal"))
    scan = scan_segment(seg)
    data = seg.read_bytes()
    seg.write_bytes(data[: scan.records[1].offset] + data[scan.records[2].offset :])
    _expect(root, seg.name, "seq 30", "expected seq 30 got 31")


def test_tail_deleted_consistently_is_caught_by_an_external_checkpoint(root: Path, pristine: Path) -> None:
    witness = read_checkpoint_log(StreamPaths(pristine, "commits", "n1").checkpoints)[-1][1]["note"]
    verify(root, public_keys=KEYS, external_checkpoint=witness)  # consistent before the rewrite
    paths = StreamPaths(root, "commits", "n1")
    last = _files(root)[-1]
    os.unlink(last)
    for log in (paths.manifest, paths.checkpoints):
        lines = log.read_text().splitlines()
        log.write_text("\n".join(lines[:-1]) + "\n")
    shutil.rmtree(root / "streams/commits/n1/wal")  # and the rows after it
    _expect(root, "head.json", "covers 35 rows")  # the signed head still tells ...
    paths.head.unlink()  # ... so a thorough admin removes it too
    verify(root, public_keys=KEYS)  # locally consistent: only a witness can tell
    _expect(root, "external checkpoint", "tree size expected <= 20", "got 30", external=witness)


def test_external_checkpoint_from_a_rewritten_history(root: Path, pristine: Path) -> None:
    from visionality.ledger.checkpoint import Checkpoint, sign_checkpoint

    forged = sign_checkpoint(Checkpoint("visionality.ledger/n1/commits", 25, b"\x01" * 32), KEY)
    _expect(root, "seq 24", "external checkpoint root at tree size 25 expected", external=forged)


def test_external_checkpoint_signed_by_another_key(root: Path) -> None:
    from visionality.ledger.checkpoint import Checkpoint, sign_checkpoint

    other = sign_checkpoint(Checkpoint("visionality.ledger/n1/commits", 10, b"\x01" * 32), SigningKey.generate())
    _expect(root, "external checkpoint", "expected a signature by", external=other)


def test_wrong_public_key(root: Path) -> None:
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify(root, public_keys={"*": SigningKey.generate().verify_key})


def test_event_changed(root: Path) -> None:
    f = next((root / "events").glob("date=*/cli-*.parquet"))
    _rewrite(f, lambda t: _set(t, "fields", 1, '{"key_id":"k2","kind":"jti"}'))
    _expect(root, f.name, "seq 1", "row hash expected")
