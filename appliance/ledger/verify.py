"""``verify``: recompute every row hash, the Merkle tree, every signature, the manifest chain and file hashes.

For each stream (commits and events, every appliance/writer) it checks, in order, and stops at the first
failure with a ``VerificationError`` naming the file and seq, expected vs got:

1. the manifest: each entry's Ed25519 signature, its ``prev`` hash chain, contiguous seq ranges;
2. the checkpoint log: each C2SP signed note's signature, origin, non-decreasing tree sizes;
3. each sealed file in manifest order: present, seq column = leaf index, every row's canonical bytes
   hash to its ``row_hash``, the RFC 6962 root at the file's end equal to the signed checkpoint and the
   manifest, the file's SHA-256 equal to the manifest's;
4. no Parquet file outside the manifests (a forged or re-added file) and no checkpoint beyond the files;
5. the WAL: framing and CRCs, seq continuing the sealed tree without gaps;
6. an external checkpoint (a witness's copy): signature, and the root recomputed at its tree size.

Leaves are recomputed with DuckDB (``canonical.canonical_sql``) and any row that differs from its stored
hash is re-encoded with the Python reference before it is called tampered; the tree is always built from
recomputed leaves, never from the stored ``row_hash`` column.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ..errors import LedgerError, VerificationError  # noqa: TID252
from .canonical import canonical_from_values, canonical_sql
from .checkpoint import Checkpoint, parse_note
from .merkle import CompactRange, leaf_hash
from .stream import (
    KINDS,
    SCHEMAS,
    ManifestEntry,
    StreamPaths,
    check_head,
    list_sealed_files,
    list_stream_ids,
    manifest_signing_bytes,
    parse_file_name,
    read_checkpoint_log,
    read_head,
    read_manifest,
)
from .wal import KIND_ROW, scan_segment, segment_paths

__all__ = ["verify", "VerifyReport", "StreamReport"]

_ZERO_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class StreamReport:
    kind: str
    stream_id: str
    origin: str
    files: int
    sealed_rows: int  # tree size covered by signed checkpoints
    root: str  # base64 root at sealed_rows
    wal_rows: int  # rows appended but not sealed yet (covered by the WAL checks only)
    checkpoints: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    streams: tuple[StreamReport, ...]
    external: tuple[str, ...] = ()  # "origin@size" of external checkpoints found consistent
    warnings: tuple[str, ...] = field(default=())

    @property
    def rows(self) -> int:
        return sum(s.sealed_rows + s.wal_rows for s in self.streams)


def _key_for(keys: Mapping[str, VerifyKey], origin: str, stream_id: str) -> VerifyKey:
    for name in (origin, stream_id, "*"):
        if name in keys:
            return keys[name]
    raise VerificationError(f"no trusted public key for origin {origin!r} (give one for it or '*')")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(slots=True)
class _External:
    origin: str
    checkpoint: Checkpoint
    matched: bool = False


def verify(
    root: Path,
    *,
    public_keys: Mapping[str, VerifyKey],
    external_checkpoint: str | Sequence[str] | None = None,
) -> VerifyReport:
    """Verify the whole ledger under ``root``; raises ``VerificationError`` at the first failure.

    ``external_checkpoint``: one signed note, or several (one per stream, e.g. each node's witness copy).
    """
    root = Path(root)
    notes = [external_checkpoint] if isinstance(external_checkpoint, str) else list(external_checkpoint or ())
    externals: dict[str, _External] = {}
    for note in notes:
        witnessed = _parse_external(note, public_keys)
        if witnessed.origin in externals:
            raise VerificationError(
                f"external checkpoints: expected one per stream, got two for origin {witnessed.origin!r}"
            )
        externals[witnessed.origin] = witnessed
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        reports: list[StreamReport] = []
        warnings: list[str] = []
        for kind in KINDS:
            claimed: set[str] = set()
            for stream_id in list_stream_ids(root, kind):
                paths = StreamPaths(root, kind, stream_id)
                report = _verify_stream(con, paths, public_keys, externals, claimed, warnings)
                if report is not None:
                    reports.append(report)
            for path in list_sealed_files(root, kind):
                rel = path.relative_to(root).as_posix()
                if rel not in claimed:
                    parsed = parse_file_name(path.name)
                    seq = f" seq {parsed[1]}" if parsed else ""
                    raise VerificationError(
                        f"{rel}{seq}: file is in no manifest (expected only sealed files, got an extra one: "
                        "forged, re-added or half-sealed by a crash)"
                    )
    except (OSError, LedgerError, duckdb.Error, pa.ArrowException) as e:
        if isinstance(e, VerificationError):
            raise
        raise VerificationError(f"ledger under {root} cannot be read: {e}") from e
    finally:
        con.close()
    for external in externals.values():
        if not external.matched:
            raise VerificationError(
                f"external checkpoint: origin {external.origin!r} expected in this ledger, got no such stream"
            )
    ext = tuple(f"{e.origin}@{e.checkpoint.tree_size}" for e in externals.values())
    return VerifyReport(tuple(reports), ext, tuple(warnings))


def _parse_external(note: str, keys: Mapping[str, VerifyKey]) -> _External:
    signed = parse_note(note if note.endswith("\n") else note + "\n")
    origin = signed.text.split("\n", 1)[0]
    key = _key_for(keys, origin, "")
    try:
        cp = signed.verify(origin, key)
    except VerificationError as e:
        raise VerificationError(f"external checkpoint: {e}") from e
    return _External(origin, cp)


def _verify_stream(
    con: duckdb.DuckDBPyConnection,
    paths: StreamPaths,
    keys: Mapping[str, VerifyKey],
    externals: Mapping[str, _External],
    claimed: set[str],
    warnings: list[str],
) -> StreamReport | None:
    mpath = paths.manifest.relative_to(paths.root).as_posix()
    entries = read_manifest(paths.manifest)
    origin = entries[0].data.get("origin", "") if entries else _origin_from_logs(paths)
    if not origin:
        if not segment_paths(paths.wal_dir):
            return None
        origin = _origin_from_wal(paths)
    key = _key_for(keys, origin, paths.stream_id)
    _check_manifest(entries, mpath, origin, paths, key)
    checkpoints = _check_checkpoint_log(paths, origin, key)
    ext = externals.get(origin)
    if ext is not None:
        ext.matched = True

    tree = CompactRange()
    for entry in entries:
        _check_file(con, paths, entry, tree, checkpoints, ext)
        claimed.add(entry.data["file"])
    sealed = tree.size
    cpath = paths.checkpoints.relative_to(paths.root).as_posix()
    for size, (line_no, _) in checkpoints.items():
        if size > sealed:
            raise VerificationError(
                f"{cpath} line {line_no}: checkpoint tree size {size} expected <= {sealed} sealed rows; "
                "sealed files or manifest entries were removed"
            )
    if ext is not None and ext.checkpoint.tree_size > sealed:
        raise VerificationError(
            f"external checkpoint for {origin}: tree size expected <= {sealed} (sealed here) got "
            f"{ext.checkpoint.tree_size}: rows the witness saw are gone"
        )
    hpath = paths.head.relative_to(paths.root).as_posix()
    try:
        head = read_head(paths, origin, key)  # before the WAL: it covers only rows already durable there
    except LedgerError as e:
        raise VerificationError(f"{hpath}: {e}") from e
    wal_leaves: list[bytes] = []
    wal_rows = _check_wal(paths, sealed, warnings, wal_leaves)
    if head is not None:
        try:
            check_head(hpath, head, tree, wal_leaves)
        except LedgerError as e:
            raise VerificationError(str(e)) from e
    last_cp = max(checkpoints) if checkpoints else 0
    if entries and last_cp != sealed:
        raise VerificationError(
            f"{cpath}: latest checkpoint tree size expected {sealed} got {last_cp}; checkpoint log edited"
        )
    return StreamReport(
        kind=paths.kind,
        stream_id=paths.stream_id,
        origin=origin,
        files=len(entries),
        sealed_rows=sealed,
        root=_b64(tree.root()),
        wal_rows=wal_rows,
        checkpoints=len(checkpoints),
    )


def _origin_from_logs(paths: StreamPaths) -> str:
    for _, data in read_checkpoint_log(paths.checkpoints):
        note = data.get("note")
        if isinstance(note, str):
            return note.split("\n", 1)[0]
    return ""


def _origin_from_wal(paths: StreamPaths) -> str:
    for _, path in segment_paths(paths.wal_dir):
        header = scan_segment(path).header
        if header and isinstance(header.get("origin"), str):
            return str(header["origin"])
    raise VerificationError(f"{paths.wal_dir}: WAL segments without a readable header (expected an origin)")


def _check_manifest(entries: list[ManifestEntry], mpath: str, origin: str, paths: StreamPaths, key: VerifyKey) -> None:
    prev = _ZERO_HASH
    next_seq = 0
    for e in entries:
        where = f"{mpath} line {e.line_no}"
        d = e.data
        try:
            key.verify(manifest_signing_bytes(d), base64.b64decode(str(d.get("sig", "")), validate=True))
        except (BadSignatureError, binascii.Error, ValueError) as err:
            raise VerificationError(f"{where} ({d.get('file')}): manifest signature does not verify") from err
        if d.get("prev") != prev:
            raise VerificationError(
                f"{where} ({d.get('file')}): prev manifest hash expected {prev} got {d.get('prev')}"
            )
        for name, want in (("origin", origin), ("kind", paths.kind), ("stream", paths.stream_id)):
            if d.get(name) != want:
                raise VerificationError(f"{where}: {name} expected {want!r} got {d.get(name)!r}")
        first, last = d.get("first_seq"), d.get("last_seq")
        if first != next_seq or not isinstance(last, int) or last < first or d.get("tree_size") != last + 1:
            raise VerificationError(
                f"{where} ({d.get('file')}) seq {next_seq}: range expected to start at {next_seq}, "
                f"got {first}..{last} (tree size {d.get('tree_size')})"
            )
        prev = e.hash
        next_seq = last + 1


def _check_checkpoint_log(paths: StreamPaths, origin: str, key: VerifyKey) -> dict[int, tuple[int, bytes]]:
    """tree size -> (line, root) for every signed checkpoint of the stream."""
    cpath = paths.checkpoints.relative_to(paths.root).as_posix()
    out: dict[int, tuple[int, bytes]] = {}
    last = -1
    for line_no, data in read_checkpoint_log(paths.checkpoints):
        where = f"{cpath} line {line_no}"
        note = data.get("note")
        if not isinstance(note, str):
            raise VerificationError(f"{where}: expected a signed note, got {type(note).__name__}")
        try:
            cp = parse_note(note).verify(origin, key)
        except VerificationError as e:
            raise VerificationError(f"{where} ({data.get('file')}): {e}") from e
        if cp.origin != origin:
            raise VerificationError(f"{where}: checkpoint origin expected {origin!r} got {cp.origin!r}")
        if cp.tree_size < last:
            raise VerificationError(f"{where}: tree size expected >= {last} got {cp.tree_size} (log reordered)")
        if data.get("tree_size") != cp.tree_size:
            raise VerificationError(f"{where}: tree_size field expected {cp.tree_size} got {data.get('tree_size')}")
        if cp.tree_size in out and out[cp.tree_size][1] != cp.root:
            raise VerificationError(f"{where}: two signed roots for tree size {cp.tree_size} (a forked log)")
        out.setdefault(cp.tree_size, (line_no, cp.root))
        last = cp.tree_size
    return out


def _check_file(
    con: duckdb.DuckDBPyConnection,
    paths: StreamPaths,
    entry: ManifestEntry,
    tree: CompactRange,
    checkpoints: dict[int, tuple[int, bytes]],
    ext: _External | None,
) -> None:
    d = entry.data
    rel = str(d["file"])
    first, last = int(d["first_seq"]), int(d["last_seq"])
    path = paths.root / rel
    if not path.is_file():
        raise VerificationError(f"{rel} seq {first}: file missing (expected sha256 {d['file_sha256']}, got no file)")
    schema = SCHEMAS[paths.kind]
    got_schema = pq.read_schema(path)
    if not got_schema.remove_metadata().equals(schema):
        raise VerificationError(f"{rel} seq {first}: Parquet schema expected {schema} got {got_schema}")
    sql = (
        f"SELECT seq, row_hash, leaf, leaf IS NOT DISTINCT FROM row_hash AS same FROM (SELECT seq, row_hash, "
        f"sha256('\\x00'::BLOB || encode({canonical_sql(paths.kind)})) AS leaf, file_row_number "
        "FROM read_parquet(?, hive_partitioning = false, file_row_number = true)) ORDER BY file_row_number"
    )
    table = con.sql(sql, params=[str(path)]).to_arrow_table()
    n = table.num_rows
    expected_seq = pa.array(range(first, first + n), pa.int64())
    same_seq = pc.equal(table.column("seq"), expected_seq)
    if not pc.all(same_seq).as_py():
        i = pc.index(same_seq, False).as_py()
        raise VerificationError(
            f"{rel} seq {first + i}: row {i} expected seq {first + i} got {table.column('seq')[i].as_py()} "
            "(rows deleted, reordered or files swapped)"
        )
    if n != last - first + 1:
        raise VerificationError(
            f"{rel} seq {first + n}: expected {last - first + 1} rows (seq {first}..{last}) got {n} (rows deleted)"
        )
    leaves_hex = table.column("leaf").to_pylist()
    mismatch = pc.invert(table.column("same"))
    if pc.any(mismatch).as_py():
        stored = table.column("row_hash")
        rows = pq.read_table(path, schema=schema)  # slow path: only files with a suspicious row
        for i in pc.indices_nonzero(mismatch).to_pylist():
            values = rows.slice(i, 1).to_pylist()[0]
            leaf = leaf_hash(canonical_from_values(paths.kind, values)).hex()
            if leaf != stored[i].as_py():
                raise VerificationError(
                    f"{rel} seq {first + i}: row hash expected {stored[i].as_py()} (recorded) got {leaf} "
                    "(recomputed from the row: the row was changed)"
                )
            leaves_hex[i] = leaf
    stops = {*checkpoints, int(d["tree_size"]), *([ext.checkpoint.tree_size] if ext else [])}
    start = tree.size
    done = 0
    for stop in sorted(s for s in stops if start < s <= last + 1):
        tree.extend([bytes.fromhex(h) for h in leaves_hex[done : stop - start]])
        done = stop - start
        _check_root_at(rel, tree, d, checkpoints, ext)
    tree.extend([bytes.fromhex(h) for h in leaves_hex[done:]])
    file_sha = _sha256_file(path)
    if file_sha != d["file_sha256"]:
        raise VerificationError(
            f"{rel} seq {first}: file sha256 expected {d['file_sha256']} got {file_sha} (file rewritten)"
        )


def _check_root_at(
    rel: str, tree: CompactRange, d: dict[str, object], checkpoints: dict[int, tuple[int, bytes]], ext: _External | None
) -> None:
    size = tree.size
    got = tree.root()
    seq = size - 1
    if size in checkpoints and checkpoints[size][1] != got:
        raise VerificationError(
            f"{rel} seq {seq}: Merkle root at tree size {size} expected {_b64(checkpoints[size][1])} "
            f"(signed checkpoint) got {_b64(got)}"
        )
    if size == d["tree_size"]:
        if size not in checkpoints:
            raise VerificationError(
                f"{rel} seq {seq}: expected a signed checkpoint at tree size {size}, got none (checkpoint log edited)"
            )
        if d["root"] != _b64(got):
            raise VerificationError(
                f"{rel} seq {seq}: manifest root at tree size {size} expected {d['root']} got {_b64(got)}"
            )
    if ext is not None and size == ext.checkpoint.tree_size and ext.checkpoint.root != got:
        raise VerificationError(
            f"{rel} seq {seq}: external checkpoint root at tree size {size} expected "
            f"{_b64(ext.checkpoint.root)} got {_b64(got)} (the ledger was rewritten after the witness saw it)"
        )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _writer_active(paths: StreamPaths) -> bool:
    """True when a process holds the stream's lock (a torn tail may be a write in progress)."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe lock if we got it
    return False


def _check_wal(paths: StreamPaths, sealed: int, warnings: list[str], leaves: list[bytes]) -> int:
    """Check the WAL's rows follow the sealed ones in seq order; their leaf hashes go to ``leaves``."""
    segments = segment_paths(paths.wal_dir)
    expected: int | None = None
    unsealed = 0
    for i, (_, path) in enumerate(segments):
        rel = path.relative_to(paths.root).as_posix()
        try:
            scan = scan_segment(path)
        except FileNotFoundError:
            continue
        last_seq = None
        for rec in scan.records:
            if rec.kind != KIND_ROW:
                continue
            seq = _row_seq(rec.payload, rel, rec.offset)
            if expected is None:
                if seq > sealed:
                    raise VerificationError(
                        f"{rel} seq {sealed}: first unsealed WAL row expected seq {sealed} got {seq} (WAL truncated)"
                    )
            elif seq != expected:
                raise VerificationError(
                    f"{rel} seq {expected}: WAL row at offset {rec.offset} expected seq {expected} got {seq} "
                    "(WAL truncated or rows removed)"
                )
            expected = seq + 1
            last_seq = seq
            if seq >= sealed:
                unsealed += 1
                leaves.append(leaf_hash(rec.payload))
        after = f" after seq {last_seq}" if last_seq is not None else ""
        if scan.corrupt:
            raise VerificationError(f"{rel}{after}: WAL damaged: {scan.corrupt}")
        if scan.torn:
            msg = (
                f"{rel}{after}: WAL ends in a partial record at offset {scan.valid_end} of {scan.size} "
                "(expected whole records)"
            )
            if i != len(segments) - 1:
                raise VerificationError(msg + " in a segment that is not the newest: WAL truncated")
            if _writer_active(paths):
                warnings.append(msg + "; a writer is active, probably a write in progress")
            else:
                raise VerificationError(
                    msg + "; no writer holds the stream: either a crash (start the appliance once to repair) "
                    "or the WAL was truncated"
                )
    return unsealed


def _row_seq(payload: bytes, rel: str, offset: int) -> int:
    try:
        seq = json.loads(payload)["seq"]
    except (ValueError, KeyError, TypeError) as e:
        raise VerificationError(f"{rel}: WAL row at offset {offset} expected canonical JSON, got garbage") from e
    if not isinstance(seq, int):
        raise VerificationError(f"{rel}: WAL row at offset {offset} expected an integer seq, got {seq!r}")
    return seq
