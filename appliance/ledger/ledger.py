"""The appliance's commit ledger: WAL with group commit on the request path, sealing in the background.

``append`` is the hot path: encode the canonical row, hash the leaf, one ``os.write`` to the WAL, no fsync,
no Parquet. A committer task ``fdatasync``s every ``group_commit_ms`` (and at once when an intent waits),
so a final row is durable within that interval; ``append_intent`` awaits the fsync because the call is
about to reach the provider and must survive ``kill -9`` (issue 3, "Write path").

A sealer task rotates the WAL segment when ``seal_max_rows`` rows or ``seal_max_age_s`` seconds are pending,
writes the rows of the old segment as Parquet (pyarrow's C++ JSON reader and Parquet writer, off the
event loop), appends the signed checkpoint and manifest entry, carries still-open intents forward into
the active segment and deletes the old one. Pending rows are read back from the rotated segment, not kept
in memory, so the appliance's memory does not grow with traffic between seals.

Any write or fsync failure flips ``healthy`` to False and every later call raises ``LedgerUnavailable``:
the appliance answers 503 rather than serve traffic it cannot record (STYLE.md 2, fail closed). A restart
(``start``) recovers from the WAL.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nacl.signing import SigningKey

from ..commit import CommitRecord, Decision  # noqa: TID252
from ..errors import LedgerError, LedgerUnavailable  # noqa: TID252
from .canonical import decode_commit, encode_commit, format_time, parse_time
from .merkle import CompactRange, leaf_hash
from .stream import (
    PendingBatch,
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
from .wal import KIND_INTENT, KIND_ROW, SegmentWriter, frame, fsync_dir, scan_segment, segment_paths

__all__ = ["Ledger", "RecoveryReport", "lock_stream"]

log = logging.getLogger("visionality.ledger")

_SEAL_POLL_S = 0.05  # how often the sealer looks at the pending count; bounds overshoot of seal_max_rows
_UNSETTLED_CODE = "unsettled_after_restart"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``start`` found and did. Logged, and returned for the appliance's startup line."""

    stream_id: str
    origin: str
    segments_replayed: int = 0
    rows_resealed: int = 0  # WAL rows that were not yet in a Parquet file
    sealed_files: tuple[str, ...] = ()
    unsettled: tuple[str, ...] = ()  # commit ids recorded as Decision.UNSETTLED at reserved cost
    torn_tail_bytes: int = 0
    quarantined: tuple[str, ...] = ()
    next_seq: int = 0


def lock_stream(paths: StreamPaths, *, blocking: bool) -> int:
    """An exclusive ``flock`` on the stream: one writer per stream across processes."""
    try:
        paths.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise LedgerUnavailable(f"cannot open stream lock {paths.lock}: {e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError as e:
        os.close(fd)
        raise LedgerError(f"another process is writing stream {paths.kind}/{paths.stream_id} ({paths.lock})") from e
    except OSError as e:
        os.close(fd)
        raise LedgerUnavailable(f"cannot lock {paths.lock}: {e}") from e
    return fd


@dataclass(slots=True)
class _Replay:
    rows: list[PendingRow] = field(default_factory=list)
    finals: set[str] = field(default_factory=set)
    intents: dict[str, bytes] = field(default_factory=dict)
    last_time: str | None = None
    torn_bytes: int = 0
    segments: list[tuple[int, Path]] = field(default_factory=list)


def replay_wal(paths: StreamPaths, sealed_size: int, *, repair: bool) -> _Replay:
    """Read every segment in order; truncate a torn tail of the newest one when ``repair``."""
    out = _Replay(segments=segment_paths(paths.wal_dir))
    expected: int | None = None
    for i, (_, path) in enumerate(out.segments):
        scan = scan_segment(path)
        newest = i == len(out.segments) - 1
        if scan.corrupt or (scan.torn and not newest):
            what = scan.corrupt or f"torn record at offset {scan.valid_end} in a segment that is not the newest"
            raise LedgerError(
                f"WAL segment {path} is damaged: {what}. Refusing to start (fail closed); "
                "run `visionality ledger verify` and investigate"
            )
        if scan.torn:
            out.torn_bytes = scan.size - scan.valid_end
            log.warning(
                "WAL %s: torn tail of %d bytes at offset %d (crash mid-write)%s",
                path,
                out.torn_bytes,
                scan.valid_end,
                "; truncating" if repair else "",
            )
            if repair:
                try:
                    with open(path, "r+b") as f:
                        f.truncate(scan.valid_end)
                        os.fsync(f.fileno())
                except OSError as e:
                    raise LedgerUnavailable(f"cannot truncate torn WAL tail of {path}: {e}") from e
        for rec in scan.records:
            if rec.kind == KIND_ROW:
                row = json.loads(rec.payload)
                seq = int(row["seq"])
                if expected is not None and seq != expected:
                    raise LedgerError(f"WAL {path} offset {rec.offset}: seq expected {expected} got {seq}")
                expected = seq + 1
                out.finals.add(row.get("commit_id", ""))
                stamp = row.get("recorded_at") or row["ts"]
                out.last_time = stamp
                if seq >= sealed_size:
                    out.rows.append((rec.payload, leaf_hash(rec.payload).hex(), stamp[:10]))
            elif rec.kind == KIND_INTENT:
                out.intents[json.loads(rec.payload)["commit_id"]] = rec.payload
    if out.rows:
        first = json.loads(out.rows[0][0])["seq"]
        if first != sealed_size:
            raise LedgerError(
                f"WAL of {paths.kind}/{paths.stream_id}: first unsealed seq expected {sealed_size} got {first}"
            )
    return out


class Ledger:
    """The durable ``CommitSink``: one stream per appliance id under a shared ledger root."""

    def __init__(
        self,
        root: Path,
        *,
        appliance_id: str,
        signing_key: SigningKey,
        origin: str | None = None,
        seal_max_rows: int = 50_000,
        seal_max_age_s: float = 30.0,
        group_commit_ms: float = 2.0,
        immutable_files: bool = False,
        head_interval_s: float = 1.0,
    ) -> None:
        self.root = Path(root)
        self.appliance_id = check_stream_id(appliance_id)
        self.origin = origin or default_origin("commits", appliance_id)
        self.immutable_files = immutable_files  # chattr +i sealed files (root only; docs/ledger.md)
        self.healthy = False
        self._paths = StreamPaths(self.root, "commits", appliance_id)
        self._key = signing_key
        self._seal_max_rows = max(1, seal_max_rows)
        self._seal_max_age_s = seal_max_age_s
        self._group_commit_s = max(group_commit_ms, 0.1) / 1000.0
        # How often the signed head (stream.write_head) follows the durable rows: the window in which a WAL row
        # is protected by its CRC alone.
        self._head_interval_s = max(head_interval_s, 0.05)
        self._synced_tree = CompactRange()  # the tree over rows known fsynced (what a head may sign)
        self._head_size = 0
        self._lock = threading.Lock()
        self._wal: SegmentWriter | None = None
        self._state = SealedState()
        self._tree = CompactRange()  # every appended row, sealed or not
        self._next_seq = 0
        self._last_us = 0  # µs since the epoch of the last recorded_at
        self._stamp_sec = -1
        self._stamp_prefix = ""
        self._pending = 0  # rows in the active WAL segment, waiting for a seal (they are read back from it)
        self._pending_since = 0.0
        self._open_intents: dict[str, tuple[int, bytes]] = {}  # commit id -> (segment, framed intent)
        self._writes = 0  # records written so far (a logical clock for group commit)
        self._synced = 0  # records known durable
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._fd_lock = threading.Lock()  # fdatasync vs closing a rotated segment
        self._commit_wake = threading.Event()  # something was written: an fsync is due
        self._intent_wake = threading.Event()  # a caller waits for durability: fsync now, do not gather
        self._committer: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock_fd: int | None = None
        self._failure = "ledger not started"
        self._stopping_commit = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> RecoveryReport:
        if self._tasks:
            raise LedgerError("ledger already started")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            report = await asyncio.to_thread(self._recover)
        except BaseException:
            self._abandon()  # release the stream so a later start (or another process) can recover it
            raise
        self._stopping_commit = False
        # Group commit runs in its own thread: a wait + fdatasync every group_commit_ms costs the event
        # loop nothing, and fdatasync releases the GIL.
        self._committer = threading.Thread(
            target=self._commit_thread, name=f"ledger-commit-{self.appliance_id}", daemon=True
        )
        self._committer.start()
        self._tasks = [
            asyncio.create_task(self._seal_loop(), name=f"ledger-seal-{self.appliance_id}"),
            asyncio.create_task(self._head_loop(), name=f"ledger-head-{self.appliance_id}"),
        ]
        log.info(
            "ledger %s started: next seq %d, %d rows re-sealed, %d unsettled, torn tail %d bytes",
            self.origin,
            report.next_seq,
            report.rows_resealed,
            len(report.unsettled),
            report.torn_tail_bytes,
        )
        return report

    def _recover(self) -> RecoveryReport:
        paths = self._paths
        self._lock_fd = lock_stream(paths, blocking=False)
        try:
            state = load_state(paths, writable=True)
            quarantined = quarantine_orphans(paths, state.tree.size)
            replay = replay_wal(paths, state.tree.size, repair=True)
        except OSError as e:
            raise LedgerUnavailable(f"cannot recover {paths.dir}: {e}") from e
        self._state = state
        self._tree = state.tree.copy()
        leaves = [bytes.fromhex(r[1]) for r in replay.rows]
        head = read_head(paths, self.origin, self._key.verify_key)
        if head is not None:
            # Fail closed: a WAL that lost or changed rows the signed head covered is not replayed into
            # sealed, signed files (docs/ledger.md "Recovery").
            check_head(f"WAL of {paths.kind}/{paths.stream_id}", head, state.tree, leaves)
            self._head_size = head.tree_size
        self._tree.extend(leaves)
        end_tree = self._tree.copy()
        self._next_seq = self._tree.size
        for stamp in (state.last_time, replay.last_time):
            if stamp:
                last = parse_time(stamp)
                self._last_us = max(self._last_us, int(last.timestamp()) * 1_000_000 + last.microsecond)
        number = replay.segments[-1][0] + 1 if replay.segments else 1
        self._wal = SegmentWriter(paths.wal_dir, number, self._header(number))
        self._failure = ""
        self.healthy = True
        unsettled = []
        for commit_id, payload in replay.intents.items():
            if commit_id in replay.finals:
                continue
            record = decode_commit(payload)
            # Issue 3: a call that reached upstream and never settled is charged its reserved worst case.
            record.decision = Decision.UNSETTLED
            record.cost_usd = record.reserved_usd
            record.error_code = record.error_code or _UNSETTLED_CODE
            self.append(record)
            unsettled.append(commit_id)
        self._wal.sync()
        self._synced = self._writes
        self._synced_tree = self._tree.copy()
        sealed: list[str] = []
        if replay.rows:
            sealed = seal_rows(
                paths,
                self._state,
                replay.rows,
                origin=self.origin,
                signing_key=self._key,
                end_tree=end_tree,
                immutable=self.immutable_files,
            )
        for _, path in replay.segments:
            path.unlink(missing_ok=True)
        if replay.segments:
            fsync_dir(paths.wal_dir)
        for commit_id in unsettled:
            log.warning("ledger %s: intent %s had no final row; recorded as unsettled", self.origin, commit_id)
        return RecoveryReport(
            stream_id=self.appliance_id,
            origin=self.origin,
            segments_replayed=len(replay.segments),
            rows_resealed=len(replay.rows),
            sealed_files=tuple(sealed),
            unsettled=tuple(unsettled),
            torn_tail_bytes=replay.torn_bytes,
            quarantined=tuple(str(p) for p in quarantined),
            next_seq=self._next_seq,
        )

    def _abandon(self) -> None:
        self.healthy = False
        self._stop = None
        with self._lock:
            wal, self._wal = self._wal, None
        if wal is not None:
            wal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _header(self, number: int) -> dict[str, object]:
        return {
            "kind": "commits",
            "stream": self.appliance_id,
            "origin": self.origin,
            "segment": number,
            "created": format_time(datetime.now(UTC)),
        }

    async def flush(self) -> None:
        """fsync now; raises ``LedgerUnavailable`` if the WAL cannot be made durable."""
        await asyncio.to_thread(self._sync_once)
        self._resolve_waiters()
        if not self.healthy:
            raise LedgerUnavailable(self._failure)

    async def close(self) -> None:
        """Flush, seal what is pending (the final checkpoint), stop the tasks, release the stream."""
        if self._stop is None:
            return
        self._stop.set()
        for task in self._tasks:
            await task  # the sealer finishes the seal it is doing
        self._tasks = []
        try:
            if self.healthy:
                await asyncio.to_thread(self._sync_once)
                if self._pending:
                    await self._seal_active()
        finally:
            self._stopping_commit = True
            self._intent_wake.set()
            self._commit_wake.set()
            if self._committer is not None:
                await asyncio.to_thread(self._committer.join)
                self._committer = None
            with self._lock:
                wal, self._wal = self._wal, None
                self.healthy = False
                self._failure = "ledger closed"
                open_intents = bool(self._open_intents)
            if wal is not None:
                try:
                    with self._fd_lock:
                        wal.sync()
                except LedgerUnavailable as e:
                    log.error("ledger %s: final fsync failed: %s", self.origin, e)
                wal.close()
                if not open_intents and self._only_header(wal.path):
                    wal.path.unlink(missing_ok=True)
            self._resolve_waiters()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._stop = None

    @staticmethod
    def _only_header(path: Path) -> bool:
        scan = scan_segment(path)
        return len(scan.records) <= 1 and not scan.torn and not scan.corrupt

    # -- the request path ---------------------------------------------------------------------------

    def append(self, record: CommitRecord) -> int:
        """Write the final row: assigns ``seq`` and ``row_hash``; durable within ``group_commit_ms``."""
        with self._lock:
            wal = self._wal
            if wal is None or not self.healthy:
                raise LedgerUnavailable(f"ledger unavailable: {self._failure}")
            seq = self._next_seq
            stamp = self._stamp()
            line = encode_commit(record, seq=seq, origin=self.origin, recorded_at=stamp)
            leaf = leaf_hash(line)
            try:
                wal.write(frame(KIND_ROW, line))
            except LedgerUnavailable as e:
                self._fail(e)
                raise
            if self._writes == self._synced:
                self._commit_wake.set()  # first write since the last fsync: the committer was idle
            self._writes += 1
            self._next_seq = seq + 1
            self._tree.append(leaf)
            row_hash = leaf.hex()
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending += 1
            self._open_intents.pop(record.commit_id, None)
        record.seq = seq
        record.row_hash = row_hash
        return seq

    def _stamp(self) -> str:
        """``recorded_at`` for the next row: now, never before the previous row (clock steps back)."""
        us = time.time_ns() // 1000
        if us < self._last_us:
            us = self._last_us
        self._last_us = us
        sec, frac = divmod(us, 1_000_000)
        if sec != self._stamp_sec:  # formatting the date once per second keeps the hot path cheap
            self._stamp_sec = sec
            self._stamp_prefix = format_time(datetime.fromtimestamp(sec, UTC))[:19]
        return f"{self._stamp_prefix}.{frac:06d}Z"

    async def append_intent(self, record: CommitRecord) -> None:
        """Record that a call is about to reach upstream; returns once that is fsynced."""
        with self._lock:
            wal = self._wal
            if wal is None or not self.healthy:
                raise LedgerUnavailable(f"ledger unavailable: {self._failure}")
            stamp = self._stamp()
            data = frame(KIND_INTENT, encode_commit(record, seq=-1, origin=self.origin, recorded_at=stamp))
            try:
                wal.write(data)
            except LedgerUnavailable as e:
                self._fail(e)
                raise
            self._writes += 1
            ticket = self._writes
            self._open_intents[record.commit_id] = (wal.number, data)
            alone = len(self._open_intents) == 1 and not self._waiters
        if alone and self._sync_inline():
            if self._synced >= ticket:
                return
        self._intent_wake.set()  # an intent is waiting: fsync now rather than at the next tick
        self._commit_wake.set()
        await self._wait_durable(ticket)

    def _sync_inline(self) -> bool:
        """fdatasync on the caller's thread when this intent is the only call in flight.

        Handing the fsync to the committer thread and back costs two thread wake-ups (~170 µs here) on top
        of the fsync itself; with nobody to group with there is nothing to gain from it, and the event loop
        has nothing else to do meanwhile. Under concurrency the committer groups intents as before -- the
        same trade as PostgreSQL's ``commit_siblings``, which delays for a group only when enough other
        transactions are active. Returns False (use the committer) if it is busy syncing right now.
        """
        if not self._fd_lock.acquire(blocking=False):
            return False
        try:
            self._sync_locked()
        finally:
            self._fd_lock.release()
        return True

    def _sync_locked(self) -> None:
        """fdatasync everything written so far; the caller holds ``_fd_lock``. On failure the ledger is failed
        (``healthy`` False, waiters refused) and ``LedgerUnavailable`` raised."""
        with self._lock:
            target, wal, tree = self._writes, self._wal, self._tree.copy()
        if target > self._synced and wal is not None and self.healthy:
            try:
                wal.sync()
            except LedgerUnavailable as e:
                self._fail(e)
                raise
            self._synced = max(self._synced, target)
            self._publish_synced(tree)

    # -- group commit -------------------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        if self.healthy:
            log.error("ledger %s unavailable, refusing new calls: %s", self.origin, error)
        self.healthy = False
        self._failure = str(error)

    async def _wait_durable(self, ticket: int) -> None:
        if self._synced >= ticket:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ticket, fut))
        self._intent_wake.set()
        self._commit_wake.set()
        await fut

    def _resolve_waiters(self) -> None:
        """On the event loop: complete intents covered by the last fsync, fail all if unhealthy."""
        keep = []
        for ticket, fut in self._waiters:
            if fut.done():
                continue
            if ticket <= self._synced:
                fut.set_result(None)
            elif not self.healthy:
                fut.set_exception(LedgerUnavailable(f"ledger unavailable: {self._failure}"))
            else:
                keep.append((ticket, fut))
        self._waiters = keep

    def _sync_once(self) -> None:
        """fdatasync the active segment if anything was written since the last one (any thread)."""
        with self._fd_lock:
            try:
                self._sync_locked()
            except LedgerUnavailable:
                pass  # the ledger is failed now: _resolve_waiters refuses every waiting intent

    def _publish_synced(self, tree: CompactRange) -> None:
        # Every row in ``tree`` was written before the fsync that just returned (both under self._lock).
        if tree.size > self._synced_tree.size:
            self._synced_tree = tree

    async def _head_loop(self) -> None:
        """Re-sign the head over the durable rows every ``head_interval_s`` while rows arrive."""
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self._head_interval_s)
            except TimeoutError:
                pass
            if self.healthy and self._synced_tree.size > self._head_size:
                try:
                    await asyncio.to_thread(self._write_head)
                except OSError as e:
                    # Tamper evidence cannot advance: refuse calls rather than record them unprotected.
                    self._fail(LedgerUnavailable(f"cannot write the signed head of {self.origin}: {e}"))

    def _write_head(self) -> None:
        tree = self._synced_tree
        if tree.size > self._head_size:
            write_head(self._paths, self.origin, tree, self._key)
            self._head_size = tree.size

    def _commit_thread(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            # Idle (nothing written since the last fsync): sleep until a write wakes us, so an idle
            # appliance's committer does not ask for the GIL 500 times a second.
            idle = self._writes == self._synced
            self._commit_wake.wait(None if idle and not self._stopping_commit else self._group_commit_s)
            if idle and not self._waiters and not self._stopping_commit:
                # Woken by a final row: gather a group behind it -- but an intent arriving meanwhile cuts
                # the gathering short. A call waits for its intent's fsync before it may leave, and at low
                # concurrency the next call's intent lands right in this window (it cost c=1 calls ~1.7 ms).
                self._intent_wake.wait(self._group_commit_s)
            # Clear before _sync_once reads the write count: a write whose wake-up is cleared here is
            # covered by this fsync, and one that comes after leaves its event set for the next round.
            self._intent_wake.clear()
            self._commit_wake.clear()
            stopping = self._stopping_commit
            self._sync_once()
            if self._waiters:
                try:
                    loop.call_soon_threadsafe(self._resolve_waiters)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    return
            if stopping:
                return

    # -- sealing ------------------------------------------------------------------------------------

    def _seal_due(self) -> bool:
        n = self._pending
        return n >= self._seal_max_rows or (n > 0 and time.monotonic() - self._pending_since >= self._seal_max_age_s)

    async def _seal_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), _SEAL_POLL_S)
            except TimeoutError:
                pass
            if self._stop.is_set() or not self.healthy or not self._seal_due():
                continue
            try:
                await self._seal_active()
            except LedgerError as e:
                self._fail(e)  # checkpoints cannot advance: fail closed, the WAL keeps the rows
            except Exception as e:  # a bug must not kill the sealer silently and leave the appliance serving
                log.exception("ledger %s: sealing failed unexpectedly", self.origin)
                self._fail(e)

    async def _seal_active(self) -> None:
        """Rotate the WAL segment, seal the rows of the old one, retire it."""
        with self._lock:
            if self._wal is None:
                return
            number = self._wal.number + 1
        new_wal = await asyncio.to_thread(SegmentWriter, self._paths.wal_dir, number, self._header(number))
        with self._lock:
            old, self._wal = self._wal, new_wal
            rows, self._pending = self._pending, 0
            end_tree = self._tree.copy()
            at_swap = self._writes

        def finish_old() -> None:
            # Every write up to the swap went to this segment or an earlier, already synced one.
            with self._fd_lock:
                try:
                    old.sync()
                    self._synced = max(self._synced, at_swap)
                finally:
                    old.close()

        try:
            await asyncio.to_thread(finish_old)
        except LedgerUnavailable as e:
            self._fail(e)
            raise
        finally:
            self._resolve_waiters()
        if rows:

            def seal_old() -> None:
                seal_rows(
                    self._paths,
                    self._state,
                    PendingBatch.from_segment(old.path, rows),
                    origin=self.origin,
                    signing_key=self._key,
                    end_tree=end_tree,
                    immutable=self.immutable_files,
                )

            await asyncio.to_thread(seal_old)
        await self._retire(old.number)

    async def _retire(self, upto: int) -> None:
        """Delete sealed segments; first copy intents still waiting for their final row forward."""
        with self._lock:
            wal = self._wal
            if wal is None:
                return
            carried = 0
            for commit_id, (segment, data) in list(self._open_intents.items()):
                if segment <= upto:
                    try:
                        wal.write(data)
                    except LedgerUnavailable as e:
                        self._fail(e)
                        raise
                    self._writes += 1
                    self._open_intents[commit_id] = (wal.number, data)
                    carried += 1
        if carried:
            await asyncio.to_thread(self._sync_once)
            if not self.healthy:
                raise LedgerUnavailable(self._failure)

        def unlink() -> None:
            for number, path in segment_paths(self._paths.wal_dir):
                if number <= upto:
                    path.unlink(missing_ok=True)
            fsync_dir(self._paths.wal_dir)

        try:
            await asyncio.to_thread(unlink)
        except OSError as e:
            raise LedgerUnavailable(f"cannot retire WAL segments of {self.origin}: {e}") from e

    # -- introspection (tests, bench, CLI) ----------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def sealed_size(self) -> int:
        return self._state.tree.size
