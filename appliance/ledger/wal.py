"""The write-ahead log: append-only segment files of framed records, read back with torn-tail detection.

Frame: ``u32 length | u32 crc32 | u8 kind | payload`` (little endian; ``length`` counts kind + payload,
the CRC-32 covers kind + payload). Kinds: ``H`` segment header (JSON), ``R`` a row (canonical bytes, a
Merkle leaf), ``I`` an intent (canonical bytes with ``seq`` -1; never a leaf).

A crash can leave the last record of the newest segment incomplete or, on filesystems that extend the
file before the data lands, zero-filled: that is a *torn tail*, and recovery truncates it. Any other
damage (a bad record followed by more data, a torn record in an older segment) is *corruption*: the
ledger refuses to start and ``verify`` names it, because nothing but tampering or a failing disk makes it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LedgerError, LedgerUnavailable  # noqa: TID252

__all__ = [
    "KIND_HEADER",
    "KIND_ROW",
    "KIND_INTENT",
    "frame",
    "WalRecord",
    "SegmentScan",
    "scan_segment",
    "read_rows",
    "segment_paths",
    "segment_name",
    "SegmentWriter",
    "fsync_dir",
]

KIND_HEADER = b"H"
KIND_ROW = b"R"
KIND_INTENT = b"I"
_KINDS = frozenset((KIND_HEADER, KIND_ROW, KIND_INTENT))
_PREFIX = struct.Struct("<II")
_MAX_RECORD = 16 * 1024 * 1024  # a commit row is < 4 KiB; anything this large is garbage, not a record
_SUFFIX = ".wal"


def frame(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return _PREFIX.pack(len(body), zlib.crc32(body)) + body


def segment_name(number: int) -> str:
    return f"{number:012d}{_SUFFIX}"


def segment_paths(wal_dir: Path) -> list[tuple[int, Path]]:
    """Segments in order. Missing directory means no segments."""
    try:
        names = os.listdir(wal_dir)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LedgerError(f"cannot list WAL directory {wal_dir}: {e}") from e
    out = []
    for name in names:
        stem = name[: -len(_SUFFIX)]
        if name.endswith(_SUFFIX) and stem.isdigit():
            out.append((int(stem), wal_dir / name))
    return sorted(out)


@dataclass(slots=True)
class WalRecord:
    kind: bytes
    payload: bytes
    offset: int


@dataclass(slots=True)
class SegmentScan:
    path: Path
    records: list[WalRecord] = field(default_factory=list)
    valid_end: int = 0  # offset just past the last good record
    size: int = 0
    torn: bool = False  # bad bytes at the very end only: a crash, truncate them
    corrupt: str | None = None  # damage followed by more data: tampering or a failing disk

    @property
    def header(self) -> dict[str, object] | None:
        if self.records and self.records[0].kind == KIND_HEADER:
            value = json.loads(self.records[0].payload)
            return value if isinstance(value, dict) else None
        return None


def scan_segment(path: Path) -> SegmentScan:
    """Read every good record; classify what follows the last one as torn tail or corruption."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise LedgerError(f"cannot read WAL segment {path}: {e}") from e
    scan = SegmentScan(path=path, size=len(data))
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < _PREFIX.size:
            scan.torn = True
            break
        length, crc = _PREFIX.unpack_from(data, pos)
        end = pos + _PREFIX.size + length
        if end > n:
            if length > _MAX_RECORD and data.count(0, pos) != n - pos:
                scan.corrupt = f"record at offset {pos}: length {length} is not a plausible record"
            else:
                scan.torn = True
            break
        body = data[pos + _PREFIX.size : end]
        if length == 0 or zlib.crc32(body) != crc or body[:1] not in _KINDS:
            rest = data[pos:]
            if end >= n or rest.count(0) == len(rest):
                scan.torn = True  # the last record was cut or zero-filled by a crash
            else:
                scan.corrupt = f"record at offset {pos}: crc32 expected {crc:08x} got {zlib.crc32(body):08x}"
            break
        scan.records.append(WalRecord(body[:1], body[1:], pos))
        pos = end
    scan.valid_end = pos
    return scan


def read_rows(path: Path) -> tuple[bytes, list[tuple[int, int]]]:
    """The bytes of a finished (synced, rotated) segment and the (start, end) offsets of its row payloads, in
    order; intents and the header skipped. Offsets, not per-row ``bytes``: the sealer copies each payload
    once, into its batch, so a seal leaves no trail of row-sized allocations behind in malloc's arenas.

    The sealer's input: rows wait for their seal on disk, not in memory, so the appliance's memory does not
    grow with the rows pending a seal (issue 2, "memory flat"). Any damage is an error here: the segment was
    written and fsynced by this process moments ago, so a bad record means the disk or someone changed it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise LedgerUnavailable(f"cannot read WAL segment {path} for sealing: {e}") from e
    spans: list[tuple[int, int]] = []
    pos, n, unpack, crc32 = 0, len(data), _PREFIX.unpack_from, zlib.crc32
    view = memoryview(data)
    while pos < n:
        if n - pos < _PREFIX.size:
            raise LedgerError(f"WAL segment {path}: {n - pos} stray bytes at offset {pos}")
        length, crc = unpack(data, pos)
        start, end = pos + _PREFIX.size, pos + _PREFIX.size + length
        if end > n or length == 0 or crc32(view[start:end]) != crc:
            raise LedgerError(f"WAL segment {path}: bad record at offset {pos} (length {length}, crc {crc:08x})")
        if data[start] == 0x52:  # KIND_ROW
            spans.append((start + 1, end))
        pos = end
    return data, spans


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """One open segment. ``write`` is a single ``os.write`` (no fsync); ``sync`` is ``fdatasync``."""

    __slots__ = ("number", "path", "fd", "size")

    def __init__(self, wal_dir: Path, number: int, header: dict[str, object]) -> None:
        self.number = number
        self.path = wal_dir / segment_name(number)
        try:
            wal_dir.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as e:
            raise LedgerUnavailable(f"cannot open WAL segment {self.path}: {e}") from e
        self.size = os.fstat(self.fd).st_size
        if not existed or self.size == 0:
            self.write(frame(KIND_HEADER, json.dumps(header, sort_keys=True).encode()))
            try:
                os.fdatasync(self.fd)
                fsync_dir(wal_dir)
            except OSError as e:
                self.close()
                raise LedgerUnavailable(f"cannot sync new WAL segment {self.path}: {e}") from e

    def write(self, data: bytes) -> None:
        try:
            written = os.write(self.fd, data)
        except OSError as e:
            raise LedgerUnavailable(f"WAL write to {self.path} failed: {e}") from e
        if written != len(data):  # ENOSPC mid-record: the partial frame is a torn tail for recovery
            raise LedgerUnavailable(f"WAL write to {self.path} was short ({written} of {len(data)} bytes)")
        self.size += written

    def sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise LedgerUnavailable(f"WAL fsync of {self.path} failed: {e}") from e

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass  # closing after a failed write: nothing more to lose
