"""One append-only stream on disk: its paths, its manifest and checkpoint logs, and sealing into Parquet.

Layout under the ledger root (docs/ledger.md)::

    commits/date=YYYY-MM-DD/<stream>-<first seq>-<last seq>.parquet   sealed, read-only commit files
    events/date=YYYY-MM-DD/<stream>-<first seq>-<last seq>.parquet    sealed event files
    streams/<kind>/<stream>/wal/<segment>.wal                        write-ahead log segments
    streams/<kind>/<stream>/manifest.jsonl                           signed, hash-chained file manifest
    streams/<kind>/<stream>/checkpoints.jsonl                        signed checkpoint log (C2SP notes)
    streams/<kind>/<stream>/lock                                     flock: one writer per stream
    quarantine/                                                      files a crash left half-sealed

Sealing writes each file once: encode in memory, write a temp file, fsync, rename, fsync the directory,
then chmod 0444 (and ``chattr +i`` when asked and running as root). Then the checkpoint (signed note) is
appended to the checkpoint log, then the manifest entry (signed, chained to the previous entry's hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from nacl.signing import SigningKey, VerifyKey

from ..errors import LedgerError, LedgerUnavailable  # noqa: TID252
from .canonical import COMMIT_SCHEMA, EVENT_SCHEMA, canonical_json, format_time
from .checkpoint import Checkpoint, parse_note, sign_checkpoint
from .merkle import CompactRange, leaf_hash
from .wal import fsync_dir, read_rows

__all__ = [
    "KINDS",
    "PendingRow",
    "PendingBatch",
    "StreamPaths",
    "SealedState",
    "ManifestEntry",
    "default_origin",
    "check_stream_id",
    "parse_file_name",
    "list_stream_ids",
    "list_sealed_files",
    "read_manifest",
    "read_checkpoint_log",
    "write_head",
    "read_head",
    "check_head",
    "load_state",
    "quarantine_orphans",
    "seal_rows",
    "manifest_signing_bytes",
    "append_line",
]

log = logging.getLogger("visionality.ledger")

KINDS = ("commits", "events")
SCHEMAS = {"commits": COMMIT_SCHEMA, "events": EVENT_SCHEMA}
_STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FILE_NAME = re.compile(r"^(?P<stream>.+)-(?P<first>\d{12})-(?P<last>\d{12})\.parquet$")
_ZERO_HASH = "0" * 64  # prev of the first manifest entry
_JSON_BLOCK = 16 << 20  # pyarrow JSON reader block: must hold the longest row (a few KiB)
_CHUNK_BYTES = 8 << 20  # JSON parsed per step while sealing (~9k rows): one row group each, bounded memory

# (canonical bytes, hex leaf hash, partition date "YYYY-MM-DD")
PendingRow = tuple[bytes, str, str]
_RECORDED_AT = b'"recorded_at":"'
_HEX_LEAF = 64  # bytes of a hex SHA-256


class PendingBatch:
    """Rows to seal, packed for the sealer: newline-joined canonical bytes (what pyarrow's JSON reader takes
    as is), hex leaf hashes back to back, and where the partition day changes.

    Built by the sealer from a rotated WAL segment (``from_segment``) or from WAL replay at recovery: rows
    waiting for a seal live on disk, not in the appliance's memory.
    """

    __slots__ = ("lines", "hashes", "count", "days")

    def __init__(self) -> None:
        self.lines = bytearray()
        self.hashes = bytearray()
        self.count = 0
        self.days: list[tuple[int, int, str]] = []  # (first row, byte offset, day) of each day run

    def add(self, line: bytes | memoryview, row_hash: str, day: str) -> None:
        if not self.days or self.days[-1][2] != day:
            self.days.append((self.count, len(self.lines), day))
        self.lines += line
        self.lines.append(10)  # b"\n"
        self.hashes += row_hash.encode("ascii")
        self.count += 1

    @classmethod
    def from_segment(cls, path: Path, expected_rows: int) -> PendingBatch:
        """The rows of a rotated WAL segment, packed for sealing (leaf hashes recomputed, day from
        ``recorded_at``). ``expected_rows`` is how many rows the writer put there: fewer or more is an error."""
        data, spans = read_rows(path)
        batch = cls()
        view = memoryview(data)
        day_b, day, key = b"", "", len(_RECORDED_AT)
        for start, end in spans:
            i = data.find(_RECORDED_AT, start, end)  # canonical JSON escapes '"' in values: only the key matches
            if i < 0:
                raise LedgerError(f"WAL segment {path}: a row without recorded_at")
            if data[i + key : i + key + 10] != day_b:
                day_b = data[i + key : i + key + 10]
                day = day_b.decode("ascii")
            line = view[start:end]
            batch.add(line, leaf_hash(line).hex(), day)
        if batch.count != expected_rows:
            raise LedgerError(f"WAL segment {path}: expected {expected_rows} rows to seal, found {batch.count}")
        return batch

    @classmethod
    def of(cls, rows: list[PendingRow]) -> PendingBatch:
        batch = cls()
        for line, row_hash, day in rows:
            batch.add(line, row_hash, day)
        return batch

    def leaves(self, start: int, end: int) -> list[bytes]:
        h = bytes(self.hashes[start * _HEX_LEAF : end * _HEX_LEAF])
        return [bytes.fromhex(h[i : i + _HEX_LEAF].decode()) for i in range(0, len(h), _HEX_LEAF)]

    def runs(self) -> list[tuple[int, int, int, int, str]]:
        """(first row, end row, first byte, end byte, day) per partition day."""
        out = []
        for i, (row, offset, day) in enumerate(self.days):
            end_row, end_offset = (
                (self.days[i + 1][0], self.days[i + 1][1])
                if i + 1 < len(self.days)
                else (
                    self.count,
                    len(self.lines),
                )
            )
            out.append((row, end_row, offset, end_offset, day))
        return out


def check_stream_id(stream_id: str) -> str:
    if not _STREAM_ID.match(stream_id):
        raise LedgerError(f"stream id {stream_id!r}: expected letters, digits, '.', '_' or '-' (max 128)")
    return stream_id


def default_origin(kind: str, stream_id: str) -> str:
    # C2SP tlog-checkpoint: the origin identifies the log, schema-less URL style, no spaces or '+'.
    return f"visionality.ledger/{stream_id}/{kind}"


def parse_file_name(name: str) -> tuple[str, int, int] | None:
    m = _FILE_NAME.match(name)
    if not m:
        return None
    return m["stream"], int(m["first"]), int(m["last"])


@dataclass(frozen=True, slots=True)
class StreamPaths:
    root: Path
    kind: str
    stream_id: str

    @property
    def dir(self) -> Path:
        return self.root / "streams" / self.kind / self.stream_id

    @property
    def wal_dir(self) -> Path:
        return self.dir / "wal"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints.jsonl"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    @property
    def head(self) -> Path:
        """The latest signed head: a checkpoint over every durable row, WAL included (``write_head``)."""
        return self.dir / "head.json"

    def partition(self, date: str) -> Path:
        return self.root / self.kind / f"date={date}"

    def file_name(self, first: int, last: int) -> str:
        return f"{self.stream_id}-{first:012d}-{last:012d}.parquet"


def list_stream_ids(root: Path, kind: str) -> list[str]:
    try:
        return sorted(p.name for p in (root / "streams" / kind).iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


def list_sealed_files(root: Path, kind: str) -> list[Path]:
    """Every Parquet file in the kind's date partitions (sorted), whoever wrote it."""
    base = root / kind
    try:
        parts = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("date="))
    except FileNotFoundError:
        return []
    out: list[Path] = []
    for part in parts:
        out.extend(sorted(p for p in part.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")))
    return out


@dataclass(slots=True)
class ManifestEntry:
    line_no: int
    raw: bytes  # the line without its newline; its SHA-256 is the next entry's ``prev``
    data: dict[str, Any]

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _read_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LedgerError(f"cannot read {path}: {e}") from e
    lines = data.split(b"\n")
    # The last element is b"" when the file ends in a newline; otherwise it is a line a crash cut short.
    return lines[:-1]


def read_manifest(path: Path) -> list[ManifestEntry]:
    out = []
    for i, raw in enumerate(_read_lines(path), start=1):
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise LedgerError(f"{path} line {i}: not JSON ({e})") from e
        if not isinstance(data, dict):
            raise LedgerError(f"{path} line {i}: expected an object")
        out.append(ManifestEntry(i, raw, data))
    return out


def read_checkpoint_log(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for i, raw in enumerate(_read_lines(path), start=1):
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise LedgerError(f"{path} line {i}: not JSON ({e})") from e
        if not isinstance(data, dict):
            raise LedgerError(f"{path} line {i}: expected an object")
        out.append((i, data))
    return out


def manifest_signing_bytes(data: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in data.items() if k != "sig"})


@dataclass(slots=True)
class SealedState:
    """Where the sealed part of a stream ends: tree, manifest chain head, last row time."""

    tree: CompactRange = field(default_factory=CompactRange)
    prev_hash: str = _ZERO_HASH
    last_time: str | None = None
    files: int = 0


def _drop_torn_line(path: Path, writable: bool) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes) left by a crash", path, len(data) - keep)
        if writable:
            with open(path, "r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())


def load_state(paths: StreamPaths, *, writable: bool) -> SealedState:
    for p in (paths.manifest, paths.checkpoints):
        _drop_torn_line(p, writable)
    entries = read_manifest(paths.manifest)
    if not entries:
        return SealedState()
    last = entries[-1]
    try:
        tree = CompactRange(int(last.data["tree_size"]), [bytes.fromhex(h) for h in last.data["compact_range"]])
        root = base64.b64decode(last.data["root"])
    except (KeyError, ValueError, TypeError) as e:
        raise LedgerError(f"{paths.manifest} line {last.line_no}: unreadable tree state ({e})") from e
    if tree.root() != root:
        raise LedgerError(
            f"{paths.manifest} line {last.line_no}: compact range root expected {root.hex()} "
            f"got {tree.root().hex()}; run `visionality ledger verify`"
        )
    return SealedState(tree=tree, prev_hash=last.hash, last_time=last.data.get("last_time"), files=len(entries))


def quarantine_orphans(paths: StreamPaths, tree_size: int) -> list[Path]:
    """Move files of this stream beyond the sealed tree (a crash between rename and manifest) aside."""
    moved = []
    for path in list_sealed_files(paths.root, paths.kind):
        parsed = parse_file_name(path.name)
        if parsed is None or parsed[0] != paths.stream_id or parsed[1] < tree_size:
            continue
        dest_dir = paths.root / "quarantine" / paths.kind
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{path.parent.name}.{path.name}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        try:
            os.rename(path, dest)
        except OSError as e:
            raise LedgerError(f"cannot move half-sealed file {path} to quarantine: {e}") from e
        log.warning("%s: not in the manifest (crash while sealing); moved to %s, rows re-sealed from WAL", path, dest)
        moved.append(dest)
    for part in (paths.root / paths.kind).glob("date=*"):
        for tmp in part.glob(f".{paths.stream_id}-*.tmp"):
            tmp.unlink(missing_ok=True)
    return moved


def _write_synced(path: Path, data: bytes, flags: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flags, 0o640)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: bytes) -> None:
    _write_synced(path, line, os.O_APPEND)


def write_head(paths: StreamPaths, origin: str, tree: CompactRange, signing_key: SigningKey) -> None:
    """Replace the stream's signed head with one over ``tree`` (every row in it already fsynced).

    Sealed checkpoints cover sealed files only; rows still in the WAL would otherwise be protected by CRCs
    alone, which anyone can recompute, and a WAL truncated at a record boundary would look whole. The head
    is re-signed every ``head_interval_s`` while rows arrive, so a WAL row edited, removed or truncated
    after it was covered fails recovery and ``verify``. One file, replaced atomically: bounded in size.
    """
    note = sign_checkpoint(Checkpoint(origin, tree.size, tree.root()), signing_key)
    data = canonical_json({"note": note, "tree_size": tree.size}) + b"\n"
    tmp = paths.dir / ".head.json.tmp"
    _write_synced(tmp, data, os.O_TRUNC)
    os.replace(tmp, paths.head)
    fsync_dir(paths.dir)


def read_head(paths: StreamPaths, origin: str, key: VerifyKey) -> Checkpoint | None:
    """The stream's signed head, verified; None when there is none. ``LedgerError`` when it does not verify."""
    try:
        raw = paths.head.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        cp = parse_note(str(data["note"])).verify(origin, key)
    except (ValueError, KeyError, TypeError, LedgerError) as e:
        raise LedgerError(f"{paths.head}: signed head does not verify ({e})") from e
    if cp.tree_size != data.get("tree_size"):
        raise LedgerError(f"{paths.head}: tree size expected {cp.tree_size} (signed) got {data.get('tree_size')}")
    return cp


def check_head(what: str, head: Checkpoint, sealed: CompactRange, rows: Sequence[bytes]) -> None:
    """Raise ``LedgerError`` unless the sealed tree plus the WAL's leaf hashes ``rows`` (in seq order,
    from ``sealed.size`` on) reach the head and have its root at its size."""
    if head.tree_size <= sealed.size:
        return  # the sealed checkpoints already cover these rows
    held = sealed.size + len(rows)
    if held < head.tree_size:
        raise LedgerError(
            f"{what}: the signed head covers {head.tree_size} rows, the sealed files and WAL hold {held}: "
            f"rows from seq {held} were removed (WAL truncated or deleted)"
        )
    tree = sealed.copy()
    tree.extend(rows[: head.tree_size - sealed.size])
    if tree.root() != head.root:
        raise LedgerError(
            f"{what}: Merkle root at tree size {head.tree_size} expected {base64.b64encode(head.root).decode()} "
            f"(signed head) got {base64.b64encode(tree.root()).decode()}: WAL rows were changed"
        )


def _chattr(path: Path, flag: str) -> None:
    """Best effort: ``chattr +i``/``+a`` needs root (CAP_LINUX_IMMUTABLE) and a filesystem that has it."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return
    try:
        subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("chattr %s %s failed (%s); the file stays only read-only", flag, path, e)


def _write_once(dest: Path, data: pa.Buffer, immutable: bool) -> None:
    part = dest.parent
    if not part.exists():
        part.mkdir(parents=True, exist_ok=True)
        fsync_dir(part.parent)
    if dest.exists():
        raise LedgerError(f"{dest} already exists; sealed files are written once")
    tmp = part / f".{dest.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, dest)
    fsync_dir(part)
    os.chmod(dest, 0o444)
    if immutable:
        _chattr(dest, "+i")


def _encode_parquet(
    batch: PendingBatch, run: tuple[int, int, int, int, str], schema: pa.Schema, first: int, stream: str
) -> pa.Buffer:
    """Canonical JSON rows -> Parquet bytes, one row group per ~8 MiB of JSON so memory stays flat.

    pyarrow parses and encodes in C++ with the GIL released; the only Python work is one ``find`` per chunk.
    """
    start, end, off, off_end, _ = run
    read_schema = pa.schema([f for f in schema if f.name != "row_hash"])
    options = pa_json.ParseOptions(explicit_schema=read_schema, unexpected_field_behavior="error")
    view = memoryview(batch.lines)
    sink = pa.BufferOutputStream()
    row, pos = start, off
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        while pos < off_end:
            cut = off_end if off_end - pos <= _CHUNK_BYTES else batch.lines.find(b"\n", pos + _CHUNK_BYTES) + 1
            table = pa_json.read_json(
                pa.py_buffer(view[pos:cut]),
                read_options=pa_json.ReadOptions(block_size=_JSON_BLOCK),
                parse_options=options,
            ).select(read_schema.names)
            n = table.num_rows
            seqs = table.column("seq")
            want = first + (row - start)
            if n == 0 or row + n > end or seqs[0].as_py() != want or seqs[-1].as_py() != want + n - 1:
                raise LedgerError(
                    f"seal of {stream}: expected seq {want}.. got {seqs[0].as_py() if n else None}.."
                    f"{seqs[-1].as_py() if n else None} ({n} rows)"
                )
            hex_view = memoryview(batch.hashes)[row * _HEX_LEAF : (row + n) * _HEX_LEAF]
            hashes = pc.cast(
                pa.Array.from_buffers(pa.binary(_HEX_LEAF), n, [None, pa.py_buffer(hex_view)]), pa.string()
            )
            writer.write_table(pa.Table.from_arrays([*table.columns, hashes], schema=schema))
            row, pos = row + n, cut
    if row != end:
        raise LedgerError(f"seal of {stream}: expected {end - start} rows got {row - start}")
    return sink.getvalue()


def seal_rows(
    paths: StreamPaths,
    state: SealedState,
    rows: PendingBatch | list[PendingRow],
    *,
    origin: str,
    signing_key: SigningKey,
    end_tree: CompactRange | None = None,
    immutable: bool = False,
    time_column: str = "recorded_at",
) -> list[str]:
    """Seal ``rows`` (seq ``state.tree.size`` onwards) into one file per date; update ``state`` in place.

    ``end_tree`` is the compact range after the last row when the caller already has it (the appliance
    keeps it on the hot path), saving the hashing. Returns the relative paths of the files written.
    Raises ``LedgerUnavailable`` when the disk refuses, ``LedgerError`` on inconsistent input.
    """
    schema = SCHEMAS[paths.kind]
    batch = rows if isinstance(rows, PendingBatch) else PendingBatch.of(rows)
    written: list[str] = []
    try:
        paths.dir.mkdir(parents=True, exist_ok=True)
        for run in batch.runs():
            start, end, _, _, date = run
            first = state.tree.size
            last = first + (end - start) - 1
            tree = state.tree
            if end_tree is not None and end == batch.count and end_tree.size == last + 1:
                tree = end_tree.copy()
            else:
                tree = tree.copy()
                tree.extend(batch.leaves(start, end))
            buf = _encode_parquet(batch, run, schema, first, paths.stream_id)
            file_sha = hashlib.sha256(memoryview(buf)).hexdigest()
            dest = paths.partition(date) / paths.file_name(first, last)
            rel = dest.relative_to(paths.root).as_posix()
            _write_once(dest, buf, immutable)
            root_hash = tree.root()
            note = sign_checkpoint(Checkpoint(origin, tree.size, root_hash), signing_key)
            new_logs = not paths.checkpoints.exists()
            append_line(
                paths.checkpoints,
                canonical_json({"file": rel, "note": note, "tree_size": tree.size}) + b"\n",
            )
            last_line = bytes(batch.lines[batch.lines.rfind(b"\n", 0, run[3] - 1) + 1 : run[3] - 1])
            last_time = json.loads(last_line)[time_column]
            entry: dict[str, Any] = {
                "v": 1,
                "kind": paths.kind,
                "stream": paths.stream_id,
                "origin": origin,
                "file": rel,
                "first_seq": first,
                "last_seq": last,
                "rows": end - start,
                "file_sha256": file_sha,
                "tree_size": tree.size,
                "root": base64.b64encode(root_hash).decode(),
                "compact_range": [h.hex() for h in tree.hashes],
                "prev": state.prev_hash,
                "last_time": last_time,
                "sealed_at": format_time(datetime.now(UTC)),
            }
            entry["sig"] = base64.b64encode(signing_key.sign(manifest_signing_bytes(entry)).signature).decode()
            raw = canonical_json(entry)
            append_line(paths.manifest, raw + b"\n")
            if new_logs and immutable:
                _chattr(paths.checkpoints, "+a")
                _chattr(paths.manifest, "+a")
            state.tree = tree
            state.prev_hash = hashlib.sha256(raw).hexdigest()
            state.last_time = last_time
            state.files += 1
            written.append(rel)
            start = end
    except (OSError, pa.ArrowException) as e:
        raise LedgerUnavailable(f"sealing {paths.kind}/{paths.stream_id} failed: {e}") from e
    return written
