"""The events stream: key issuance, revocation and configuration changes, from any process.

CLI commands run in their own process while the appliance runs, so each ``append`` takes the stream's
``flock``, replays the (short) WAL to find the next seq, writes and fsyncs the row, and seals into Parquet
when ``seal_max_rows`` rows or ``seal_max_age_s`` seconds are pending, all under the lock. Same leaf
hashing, checkpoints and manifest as the commit stream (stream.py), so ``verify`` treats both alike.
Event fields are small scalars (ids, subjects, reasons); never tokens, keys or PII values.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from nacl.signing import SigningKey

from ..errors import LedgerError, LedgerUnavailable  # noqa: TID252
from .canonical import encode_event, format_time, parse_time
from .ledger import lock_stream, replay_wal
from .merkle import leaf_hash
from .stream import (
    PendingRow,
    SealedState,
    StreamPaths,
    check_head,
    check_stream_id,
    default_origin,
    load_state,
    quarantine_orphans,
    read_head,
    seal_rows,
    write_head,
)
from .wal import KIND_ROW, SegmentWriter, frame, fsync_dir

__all__ = ["EventLog"]

_KIND_MAX = 128  # event kinds are short dotted names: key.issued, key.revoked, config.changed


class EventLog:
    """Append-only, tamper-evident event stream of one writer (e.g. ``cli`` or an appliance id)."""

    def __init__(
        self,
        root: Path,
        *,
        writer_id: str,
        signing_key: SigningKey,
        origin: str | None = None,
        seal_max_rows: int = 256,
        seal_max_age_s: float = 300.0,
        immutable_files: bool = False,
    ) -> None:
        self.root = Path(root)
        self.writer_id = check_stream_id(writer_id)
        self.origin = origin or default_origin("events", writer_id)
        self._paths = StreamPaths(self.root, "events", writer_id)
        self._key = signing_key
        self._seal_max_rows = max(1, seal_max_rows)
        self._seal_max_age_s = seal_max_age_s
        self.immutable_files = immutable_files

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = lock_stream(self._paths, blocking=True)
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def append(self, kind: str, /, **fields: str | int | bool | None) -> int:
        """Append one event, fsynced before returning; returns its seq."""
        if not kind or len(kind) > _KIND_MAX:
            raise LedgerError(f"event kind: expected 1..{_KIND_MAX} characters, got {kind!r}")
        with self._locked():
            try:
                return self._append_locked(kind, fields)
            except OSError as e:
                raise LedgerUnavailable(f"cannot append to events/{self.writer_id}: {e}") from e

    def seal(self) -> list[str]:
        """Seal pending events into Parquet now (also done automatically on append)."""
        with self._locked():
            try:
                state = load_state(self._paths, writable=True)
                quarantine_orphans(self._paths, state.tree.size)
                replay = replay_wal(self._paths, state.tree.size, repair=True)
                if not replay.rows:
                    return []
                return self._seal_locked(state, replay.rows, replay.segments)
            except OSError as e:
                raise LedgerUnavailable(f"cannot seal events/{self.writer_id}: {e}") from e

    def _append_locked(self, kind: str, fields: dict[str, str | int | bool | None]) -> int:
        state = load_state(self._paths, writable=True)
        quarantine_orphans(self._paths, state.tree.size)
        replay = replay_wal(self._paths, state.tree.size, repair=True)
        leaves = [bytes.fromhex(r[1]) for r in replay.rows]
        head = read_head(self._paths, self.origin, self._key.verify_key)
        if head is not None:  # an event WAL that lost or changed signed rows is not appended to, nor sealed
            check_head(f"WAL of events/{self.writer_id}", head, state.tree, leaves)
        seq = state.tree.size + len(replay.rows)
        now = datetime.now(UTC)
        for stamp in (state.last_time, replay.last_time):
            if stamp:
                now = max(now, parse_time(stamp))
        ts = format_time(now)
        line = encode_event(seq=seq, origin=self.origin, ts=ts, writer_id=self.writer_id, kind=kind, fields=fields)
        number = replay.segments[-1][0] if replay.segments else 1
        wal = SegmentWriter(self._paths.wal_dir, number, self._header(number))
        try:
            wal.write(frame(KIND_ROW, line))
            wal.sync()
        finally:
            wal.close()
        rows = [*replay.rows, (line, leaf_hash(line).hex(), ts[:10])]
        tree = state.tree.copy()
        tree.extend([*leaves, leaf_hash(line)])
        write_head(self._paths, self.origin, tree, self._key)  # the event is durable: sign over it at once
        if not replay.segments:
            replay.segments.append((number, wal.path))
        age = time.time() - parse_time(json.loads(rows[0][0])["ts"]).timestamp()
        if len(rows) >= self._seal_max_rows or age >= self._seal_max_age_s:
            self._seal_locked(state, rows, replay.segments)
        return seq

    def _seal_locked(self, state: SealedState, rows: list[PendingRow], segments: list[tuple[int, Path]]) -> list[str]:
        written = seal_rows(
            self._paths,
            state,
            rows,
            origin=self.origin,
            signing_key=self._key,
            immutable=self.immutable_files,
            time_column="ts",
        )
        number = segments[-1][0] + 1 if segments else 1
        SegmentWriter(self._paths.wal_dir, number, self._header(number)).close()
        for _, path in segments:
            path.unlink(missing_ok=True)
        fsync_dir(self._paths.wal_dir)
        return written

    def _header(self, number: int) -> dict[str, object]:
        return {
            "kind": "events",
            "stream": self.writer_id,
            "origin": self.origin,
            "segment": number,
            "created": format_time(datetime.now(UTC)),
        }
