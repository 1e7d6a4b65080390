"""WAL framing: records read back, torn tails told apart from corruption."""

from __future__ import annotations

from pathlib import Path

import pytest
from visionality.errors import LedgerUnavailable
from visionality.ledger.wal import KIND_INTENT, KIND_ROW, SegmentWriter, frame, scan_segment, segment_paths


def _segment(tmp_path: Path, payloads: list[bytes]) -> Path:
    w = SegmentWriter(tmp_path / "wal", 1, {"stream": "t"})
    for i, p in enumerate(payloads):
        w.write(frame(KIND_ROW if i % 2 == 0 else KIND_INTENT, p))
    w.sync()
    w.close()
    return w.path


def test_records_round_trip(tmp_path: Path) -> None:
    path = _segment(tmp_path, [b'{"seq":0}', b'{"commit_id":"x"}', b'{"seq":1}'])
    scan = scan_segment(path)
    assert scan.header == {"stream": "t"}
    assert [(r.kind, r.payload) for r in scan.records[1:]] == [
        (KIND_ROW, b'{"seq":0}'),
        (KIND_INTENT, b'{"commit_id":"x"}'),
        (KIND_ROW, b'{"seq":1}'),
    ]
    assert not scan.torn and scan.corrupt is None and scan.valid_end == scan.size
    assert segment_paths(tmp_path / "wal") == [(1, path)]


@pytest.mark.parametrize("cut", [1, 5, 9, 12])
def test_partial_last_record_is_a_torn_tail(tmp_path: Path, cut: int) -> None:
    path = _segment(tmp_path, [b'{"seq":0}', b'{"seq":1}'])
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    scan = scan_segment(path)
    assert scan.torn and scan.corrupt is None
    assert len(scan.records) == 2  # header + first row survive


def test_zero_filled_tail_is_torn(tmp_path: Path) -> None:
    path = _segment(tmp_path, [b'{"seq":0}'])
    with open(path, "ab") as f:
        f.write(b"\0" * 100)
    scan = scan_segment(path)
    assert scan.torn and scan.corrupt is None


def test_flipped_byte_in_the_middle_is_corruption(tmp_path: Path) -> None:
    path = _segment(tmp_path, [b'{"seq":0,"cost":"1.000"}', b'{"seq":1}', b'{"seq":2}'])
    data = bytearray(path.read_bytes())
    i = data.index(b"1.000")
    data[i] = ord("9")
    path.write_bytes(bytes(data))
    scan = scan_segment(path)
    assert scan.corrupt is not None and "crc32" in scan.corrupt and not scan.torn


def test_write_to_closed_descriptor_is_unavailable(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path / "wal", 1, {})
    w.close()
    with pytest.raises(LedgerUnavailable):
        w.write(b"x")
