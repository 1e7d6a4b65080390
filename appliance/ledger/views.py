"""Read path: DuckDB views ``commits`` and ``events`` over every stream, sealed files and WAL alike.

Rows still in WAL segments are parsed (pyarrow's JSON reader over the canonical bytes) and unioned in,
so a refusal is queryable the moment ``append`` returns. The connection is a snapshot: the WAL is read
first, the sealed file list second, and WAL rows already covered by a sealed file of their stream are
dropped, so a seal racing the snapshot can neither lose nor duplicate a row. Reopen to see newer rows.

The query path cannot change the ledger, nor read past it:

- ``run_query`` accepts exactly one SELECT. Not EXPLAIN: ``EXPLAIN ANALYZE COPY ... TO`` is typed EXPLAIN
  by DuckDB and runs the COPY.
- DuckDB's file access is limited to the ledger directory (``allowed_directories`` with
  ``enable_external_access = false``): ``read_text('/etc/shadow')`` or ``glob('/root/**')`` fail.
- The configuration is locked after setup (no SET, ATTACH, INSTALL, LOAD).
- The views read only the Parquet files a stream's signed manifest lists. A file dropped into a date
  partition by hand (a forged one, or one copied in) changes no total; it is logged here and named by
  ``visionality ledger verify``.

DuckDB has no GRANTs, so the filesystem (read-only sealed files, systemd ReadWritePaths) remains the outer
boundary (docs/ledger.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..errors import LedgerError  # noqa: TID252
from .merkle import leaf_hash
from .stream import (
    KINDS,
    SCHEMAS,
    StreamPaths,
    list_sealed_files,
    list_stream_ids,
    parse_file_name,
    read_manifest,
)
from .wal import KIND_ROW, scan_segment, segment_paths

__all__ = ["open_views", "run_query", "wal_table"]

_TIME_COLUMN = {"commits": "recorded_at", "events": "ts"}  # the partition date is this column's UTC day
log = logging.getLogger("visionality.ledger")

_ALLOWED = frozenset((duckdb.StatementType.SELECT,))
_JSON_BLOCK = 16 << 20


def _wal_tables(root: Path, kind: str) -> dict[str, pa.Table]:
    """Unsealed WAL rows per stream id, with the sealed schema (``row_hash`` recomputed)."""
    schema = SCHEMAS[kind]
    read_schema = pa.schema([f for f in schema if f.name != "row_hash"])
    out = {}
    for stream_id in list_stream_ids(root, kind):
        lines: list[bytes] = []
        for _, path in segment_paths(StreamPaths(root, kind, stream_id).wal_dir):
            try:
                scan = scan_segment(path)
            except FileNotFoundError:
                continue  # retired after sealing while we listed: its rows are in a sealed file
            lines.extend(r.payload for r in scan.records if r.kind == KIND_ROW)
        if not lines:
            continue
        try:
            table = pa_json.read_json(
                pa.py_buffer(b"\n".join(lines)),
                read_options=pa_json.ReadOptions(block_size=_JSON_BLOCK),
                parse_options=pa_json.ParseOptions(explicit_schema=read_schema, unexpected_field_behavior="error"),
            ).select(read_schema.names)
        except pa.ArrowException as e:
            raise LedgerError(f"WAL of {kind}/{stream_id} does not parse: {e}") from e
        hashes = pa.array([leaf_hash(line).hex() for line in lines], pa.string())
        out[stream_id] = pa.Table.from_arrays([*table.columns, hashes], schema=schema)
    return out


def wal_table(root: Path, kind: str, sealed_last: dict[str, int] | None = None) -> pa.Table:
    """WAL rows of every stream of ``kind`` past ``sealed_last[stream]``, plus the ``date`` partition column."""
    tables = _wal_tables(root, kind)
    return _with_date(kind, _unsealed(kind, tables, sealed_last or {}))


def _unsealed(kind: str, tables: dict[str, pa.Table], sealed_last: dict[str, int]) -> pa.Table:
    kept = [t.filter(pc.greater(t.column("seq"), sealed_last.get(sid, -1))) for sid, t in tables.items()]
    return pa.concat_tables(kept) if kept else SCHEMAS[kind].empty_table()


def _with_date(kind: str, table: pa.Table) -> pa.Table:
    day = pc.strftime(table.column(_TIME_COLUMN[kind]), format="%Y-%m-%d")
    return table.append_column("date", pc.cast(day, pa.date32()))


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _manifested(root: Path, kind: str) -> set[str]:
    """The files (relative to ``root``) that some stream's manifest of ``kind`` lists."""
    listed: set[str] = set()
    for stream_id in list_stream_ids(root, kind):
        path = StreamPaths(root, kind, stream_id).manifest
        if path.exists():
            listed.update(str(e.data.get("file", "")) for e in read_manifest(path))
    return listed


def _listed_files(root: Path, kind: str) -> list[Path]:
    """Sealed files in the manifests; any other Parquet file in a partition is logged and left out."""
    listed = _manifested(root, kind)  # manifests first: a seal appends its entry after the rename
    files: list[Path] = []
    unlisted: list[Path] = []
    for f in list_sealed_files(root, kind):
        (files if f.relative_to(root).as_posix() in listed else unlisted).append(f)
    if unlisted:
        log.warning(
            "ledger %s: %d Parquet file(s) in no manifest left out of the %s view (e.g. %s); "
            "run `visionality ledger verify`",
            root,
            len(unlisted),
            kind,
            unlisted[0].relative_to(root),
        )
    return files


def open_views(root: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``commits`` and ``events`` (all streams, sealed + WAL)."""
    root = Path(root).resolve()
    try:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        for kind in KINDS:
            # WAL before the file list: a row sealed in between is then found in its file (see module doc).
            tables = _wal_tables(root, kind)
            files = _listed_files(root, kind)
            sealed_last: dict[str, int] = {}
            for f in files:
                parsed = parse_file_name(f.name)
                if parsed is not None:
                    sealed_last[parsed[0]] = max(sealed_last.get(parsed[0], -1), parsed[2])
            pending = _with_date(kind, _unsealed(kind, tables, sealed_last))
            con.register(f"_wal_{kind}", pending)
            if files:
                file_list = ", ".join(_quote(f) for f in files)
                con.execute(
                    f"CREATE VIEW {kind} AS SELECT * FROM read_parquet([{file_list}], hive_partitioning = true, "
                    f"hive_types = {{'date': DATE}}) UNION ALL BY NAME SELECT * FROM _wal_{kind}"
                )
            else:
                con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _wal_{kind}")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        # Files only under the ledger root: the views need it, nothing else does (allowed_directories is
        # honoured once external access is off; DuckDB docs, "Securing DuckDB").
        con.execute(f"SET allowed_directories = [{_quote(str(root) + '/')}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error as e:
        raise LedgerError(f"cannot open ledger views over {root}: {e}") from e
    return con


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only statement; returns column names and rows."""
    try:
        statements = con.extract_statements(sql)
        if len(statements) != 1:
            raise LedgerError(f"expected exactly one SQL statement, got {len(statements)}")
        if statements[0].type not in _ALLOWED:
            raise LedgerError(f"the ledger is read-only here: expected a SELECT, got {statements[0].type.name}")
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        return columns, cur.fetchall()
    except duckdb.Error as e:
        raise LedgerError(f"query failed: {e}") from e
