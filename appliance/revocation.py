"""Revocation: turning a key (or every key of a person) off in a running appliance within a second.

Two kinds of record, both permanent (there is no un-revoke; restore access by issuing a new key):

- ``jti``: this one key is revoked.
- ``sub``: every key of this SSO subject *issued before* ``not_before`` is revoked (the leaver case; the
  pattern Entra calls revokeSignInSessions). Keys issued to the same person afterwards keep working.

Where records live:

- ``RevocationFile``: the deployment's append-only JSON-lines log (``Home.revocations_path``). Appends take
  an exclusive ``fcntl`` lock, write one line and fsync, so a record that ``append`` returned survives a
  crash. Readers take no lock and ignore a final line without its newline (a write in progress).
- ``RedisRevocationFeed``: the same records in a Redis list, for several appliance nodes (DESIGN.md, "Scale").

``RevocationSet`` is what the request path consults: two dict look-ups, no I/O. ``RevocationWatcher`` keeps
it current by polling the sources every ``interval_s`` (default 0.2 s, so a revocation lands well within
1 s) and reports ``healthy = False`` once any source has gone unread for ``fail_closed_after_s``: the
appliance then refuses calls, because a revocation we cannot see must not be bypassed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast, get_args

import redis
import redis.exceptions

from .envelope import Claims, format_time, parse_time
from .errors import EnvelopeError, RevokedError, VisionalityError

__all__ = [
    "RevocationKind",
    "RevocationRecord",
    "RevocationError",
    "RevocationUnavailable",
    "KeyRevoked",
    "RevocationSet",
    "RevocationSource",
    "RevocationFile",
    "RedisRevocationFeed",
    "RevocationWatcher",
]

log = logging.getLogger(__name__)

RevocationKind = Literal["jti", "sub"]

# Bounds on operator-supplied text, so one record stays one short line (and one small Redis entry).
_MAX_FIELD_CHARS: Final = 1024
# A record line is well under 4 KiB; a larger line is not ours (or is corrupt) and is skipped unread.
_MAX_LINE_BYTES: Final = 16 * 1024
# Redis client timeouts: a poll runs in a worker thread, but a hung socket must still not stall the
# watcher past the 1 s revocation target for long.
_REDIS_TIMEOUT_S: Final = 1.0
# Entries fetched per poll: bounds one LRANGE reply; a longer backlog is drained over the next polls.
_REDIS_BATCH: Final = 10_000


class RevocationError(VisionalityError):
    """A revocation record is invalid, or an append was refused."""


class RevocationUnavailable(RevocationError):
    """A revocation source cannot be read or written (file I/O error, Redis unreachable)."""


class KeyRevoked(RevokedError):
    """A verified envelope whose key or subject is revoked (HTTP 403).

    The message is safe for the client; ``reason`` (operator text, possibly HR detail) is for the ledger.
    """

    def __init__(self, message: str, *, kind: RevocationKind, reason: str) -> None:
        super().__init__(message)
        self.kind: RevocationKind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    """One line of the revocation log: ``{"ts", "kind", "value", "not_before", "reason", "by"}``."""

    ts: datetime
    kind: RevocationKind
    value: str
    not_before: datetime
    reason: str
    by: str

    def __post_init__(self) -> None:
        if self.kind not in get_args(RevocationKind):
            raise RevocationError(f"revocation kind: expected 'jti' or 'sub', got {self.kind!r}"[:120])
        for name in ("value", "reason", "by"):
            text = getattr(self, name)
            if not isinstance(text, str) or not text.strip():
                raise RevocationError(f"revocation {name}: expected non-empty text, got {text!r}"[:120])
            if len(text) > _MAX_FIELD_CHARS:
                raise RevocationError(f"revocation {name}: at most {_MAX_FIELD_CHARS} characters, got {len(text)}")
        for name in ("ts", "not_before"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise RevocationError(f"revocation {name}: expected a timezone-aware datetime, got {value!r}")

    def to_json(self) -> str:
        return json.dumps(
            {
                "ts": format_time(self.ts),
                "kind": self.kind,
                "value": self.value,
                "not_before": format_time(self.not_before),
                "reason": self.reason,
                "by": self.by,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RevocationRecord:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise RevocationError(f"revocation record: not JSON ({e})") from e
        if not isinstance(data, dict):
            raise RevocationError(f"revocation record: expected a JSON object, got {type(data).__name__}")
        expected = {"ts", "kind", "value", "not_before", "reason", "by"}
        if set(data) != expected:
            raise RevocationError(
                f"revocation record: expected keys {sorted(expected)}, got {sorted(map(str, data))}"[:200]
            )
        try:
            ts = parse_time(data["ts"], what="revocation ts")
            not_before = parse_time(data["not_before"], what="revocation not_before")
        except EnvelopeError as e:
            raise RevocationError(str(e)) from e
        return cls(
            ts=ts,
            kind=cast(RevocationKind, data["kind"]),
            value=data["value"],
            not_before=not_before,
            reason=data["reason"],
            by=data["by"],
        )


def _new_record(
    kind: str, value: str, reason: str, by: str, not_before: datetime | None, now: datetime | None
) -> RevocationRecord:
    ts = (now or datetime.now(UTC)).astimezone(UTC)
    return RevocationRecord(
        ts=ts,
        kind=cast(RevocationKind, kind),
        value=value,
        not_before=ts if not_before is None else not_before,
        reason=reason,
        by=by,
    )


class RevocationSet:
    """The in-memory revocation state the request path checks in O(1), with no I/O.

    Monotonic: records are only ever added. Mutated from the event-loop thread by the watcher and read by
    request hooks on the same thread; single dict operations are also atomic under CPython if a thread reads.
    """

    __slots__ = ("_jti", "_sub", "_records")

    def __init__(self, records: Sequence[RevocationRecord] = ()) -> None:
        self._jti: dict[str, str] = {}
        # sub -> (not_before as epoch seconds, reason): the latest not_before wins, it revokes the most.
        self._sub: dict[str, tuple[float, str]] = {}
        self._records = 0
        for record in records:
            self.add(record)

    def add(self, record: RevocationRecord) -> None:
        self._records += 1
        if record.kind == "jti":
            self._jti.setdefault(record.value, record.reason)
            return
        cutoff = record.not_before.timestamp()
        current = self._sub.get(record.value)
        if current is None or cutoff > current[0]:
            self._sub[record.value] = (cutoff, record.reason)

    def check(self, claims: Claims) -> str | None:
        """The revocation reason if this envelope's key or subject is revoked, else None."""
        reason = self._jti.get(claims.jti)
        if reason is not None:
            return reason
        entry = self._sub.get(claims.sub)
        if entry is not None and claims.iat.timestamp() < entry[0]:
            return entry[1]
        return None

    def ensure_not_revoked(self, claims: Claims) -> None:
        """Raise ``KeyRevoked`` (HTTP 403) if ``check`` finds a revocation."""
        reason = self._jti.get(claims.jti)
        if reason is not None:
            raise KeyRevoked("this key has been revoked", kind="jti", reason=reason)
        entry = self._sub.get(claims.sub)
        if entry is not None and claims.iat.timestamp() < entry[0]:
            raise KeyRevoked(
                "this key has been revoked (access for its holder was withdrawn)", kind="sub", reason=entry[1]
            )

    def __len__(self) -> int:
        """Distinct revoked keys plus distinct revoked subjects."""
        return len(self._jti) + len(self._sub)

    @property
    def records_applied(self) -> int:
        return self._records


class RevocationSource(Protocol):
    """Anything the watcher can poll: returns the records appended after ``offset`` and the next offset."""

    name: str

    def read_new(self, offset: int) -> tuple[list[RevocationRecord], int]: ...


def _parse_lines(lines: Sequence[bytes], where: str) -> list[RevocationRecord]:
    records: list[RevocationRecord] = []
    for line in lines:
        if not line.strip():
            continue
        if len(line) > _MAX_LINE_BYTES:
            log.error(
                "%s: skipped a %d-byte line (limit %d): not a revocation record", where, len(line), _MAX_LINE_BYTES
            )
            continue
        try:
            records.append(RevocationRecord.from_json(line))
        except RevocationError as e:
            # One corrupt line (e.g. the fragment of a writer that crashed mid-line) must not hide every
            # later revocation; it is reported loudly and skipped.
            log.error("%s: skipped a malformed revocation record: %s", where, e)
    return records


class RevocationFile:
    """The append-only revocation log (JSON lines). Offsets are byte offsets into the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"file {self.path}"
        self._inode: int | None = None

    def append(
        self,
        kind: RevocationKind,
        value: str,
        reason: str,
        by: str,
        *,
        not_before: datetime | None = None,
        now: datetime | None = None,
    ) -> RevocationRecord:
        """Durably append one record (lock, write one line, fsync) and return it."""
        record = _new_record(kind, value, reason, by, not_before, now)
        line = (record.to_json() + "\n").encode("utf-8")
        created = not self.path.exists()
        try:
            # O_RDWR (not O_WRONLY) so the last byte can be checked for a torn line under the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise RevocationUnavailable(f"cannot open the revocation log {self.path}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # Under the lock nobody else is writing, so a missing final newline means an earlier writer
                # died mid-line. Close that fragment off so our record starts on a line of its own.
                line = b"\n" + line
            _write_all(fd, line)
            os.fsync(fd)
        except OSError as e:
            raise RevocationUnavailable(f"cannot append to the revocation log {self.path}: {e}") from e
        finally:
            os.close(fd)  # releases the flock
        if created:
            _fsync_dir(self.path.parent)
        return record

    def load(self) -> RevocationSet:
        """Every complete record in the log, as a fresh set."""
        records, _ = self.read_new(0)
        return RevocationSet(records)

    def read_new(self, offset: int) -> tuple[list[RevocationRecord], int]:
        """Records in complete lines after byte ``offset``; the new offset stops before a torn last line.

        A poll with nothing new costs one ``stat``. A missing file means no revocations yet. If the file was
        replaced or shrank (it should never shrink), it is read again from the start: records are permanent
        and adding one twice is harmless.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._inode = None
            return [], 0
        except OSError as e:
            raise RevocationUnavailable(f"cannot stat the revocation log {self.path}: {e}") from e
        if self._inode is not None and st.st_ino != self._inode:
            log.warning("%s was replaced; reading it again from the start", self.path)
            offset = 0
        elif st.st_size < offset:
            log.error(
                "%s shrank from %d to %d bytes (it is append-only); reading it again", self.path, offset, st.st_size
            )
            offset = 0
        self._inode = st.st_ino
        if st.st_size == offset:
            return [], offset
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read(st.st_size - offset)
        except OSError as e:
            raise RevocationUnavailable(f"cannot read the revocation log {self.path}: {e}") from e
        end = data.rfind(b"\n")
        if end < 0:
            return [], offset  # only a line in progress
        complete = data[: end + 1]
        return _parse_lines(complete.split(b"\n"), self.name), offset + len(complete)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    # A new file's directory entry is only durable once the directory itself is fsynced.
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class RedisRevocationFeed:
    """Revocation records in a Redis list ``<prefix>:revocations``, shared by every appliance node.

    The list index is the offset. Only ``RPUSH`` and ``LRANGE`` are used, so readers never block writers.
    """

    def __init__(self, redis_url: str, prefix: str = "visionality", *, client: redis.Redis | None = None) -> None:
        if not prefix or not isinstance(prefix, str):
            raise RevocationError(f"redis revocation feed: expected a non-empty key prefix, got {prefix!r}")
        self.key = f"{prefix}:revocations"
        self.name = f"redis {_redact_url(redis_url)} {self.key}"
        try:
            self._client: redis.Redis = client or redis.Redis.from_url(
                redis_url, socket_timeout=_REDIS_TIMEOUT_S, socket_connect_timeout=_REDIS_TIMEOUT_S
            )
        except (redis.exceptions.RedisError, ValueError) as e:
            raise RevocationError(f"redis revocation feed: invalid URL {_redact_url(redis_url)}: {e}") from e

    def append(
        self,
        kind: RevocationKind,
        value: str,
        reason: str,
        by: str,
        *,
        not_before: datetime | None = None,
        now: datetime | None = None,
    ) -> RevocationRecord:
        record = _new_record(kind, value, reason, by, not_before, now)
        try:
            self._client.rpush(self.key, record.to_json())
        except (redis.exceptions.RedisError, OSError) as e:
            raise RevocationUnavailable(f"cannot publish the revocation to {self.name}: {e}") from e
        return record

    def read_new(self, offset: int) -> tuple[list[RevocationRecord], int]:
        try:
            # One round trip per poll in the common case; LLEN only when nothing came back, to tell
            # "no news" from "the list shrank" (it should never shrink).
            items = cast(list[bytes], self._client.lrange(self.key, offset, offset + _REDIS_BATCH - 1))
            if not items and offset:
                length: int = self._client.llen(self.key)
                if length < offset:
                    log.error(
                        "%s shrank from %d to %d entries (it is append-only); reading it again",
                        self.name,
                        offset,
                        length,
                    )
                    offset = 0
                    items = cast(list[bytes], self._client.lrange(self.key, 0, _REDIS_BATCH - 1))
        except (redis.exceptions.RedisError, OSError) as e:
            raise RevocationUnavailable(f"cannot read revocations from {self.name}: {e}") from e
        return _parse_lines(items, self.name), offset + len(items)

    def load(self) -> RevocationSet:
        records, _ = self.read_new(0)
        return RevocationSet(records)

    def close(self) -> None:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            self._client.close()


def _redact_url(url: str) -> str:
    # redis://user:password@host:port/db -> never log the password.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


class RevocationWatcher:
    """Keeps a ``RevocationSet`` current by polling sources from an asyncio task.

    Each poll runs ``read_new`` in a worker thread (a slow disk or Redis must not stall the proxy's event
    loop) and applies new records on the loop. On a source error the last good state is kept and the error
    is exposed as ``last_error``. ``healthy`` turns False when any source has not been read successfully for
    more than ``fail_closed_after_s`` (or never has been): the appliance then refuses calls, because a
    revocation we cannot see must not be bypassed (fail closed, STYLE.md 2).
    """

    def __init__(
        self,
        revocations: RevocationSet,
        sources: Sequence[RevocationSource],
        interval_s: float = 0.2,
        *,
        fail_closed_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not sources:
            raise RevocationError("revocation watcher: no sources to watch")
        if not 0 < interval_s <= fail_closed_after_s:
            raise RevocationError(
                "revocation watcher: expected 0 < interval_s <= fail_closed_after_s, "
                f"got {interval_s} and {fail_closed_after_s}"
            )
        self.revocations = revocations
        self.sources = list(sources)
        self.interval_s = interval_s
        self.fail_closed_after_s = fail_closed_after_s
        self._clock = clock
        self._offsets = [0] * len(self.sources)
        self._last_ok: list[float | None] = [None] * len(self.sources)
        self._errors: list[str | None] = [None] * len(self.sources)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def last_error(self) -> str | None:
        """The most recent error of any source that is still failing (None when all are fine)."""
        return next((e for e in self._errors if e is not None), None)

    @property
    def healthy(self) -> bool:
        now = self._clock()
        return all(ok is not None and now - ok <= self.fail_closed_after_s for ok in self._last_ok)

    def status(self) -> list[dict[str, Any]]:
        """Per-source state for a health endpoint: name, offset, seconds since the last good read, error."""
        now = self._clock()
        return [
            {
                "source": src.name,
                "offset": off,
                "since_ok_s": None if ok is None else round(now - ok, 3),
                "error": err,
            }
            for src, off, ok, err in zip(self.sources, self._offsets, self._last_ok, self._errors, strict=True)
        ]

    async def start(self) -> None:
        """Load every source once (so the set is complete before traffic), then poll in the background.

        Each source gets its own polling task: a Redis that hangs until its socket timeout must not delay
        revocations arriving through the file.
        """
        if self._tasks:
            return
        await self.poll_once()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(i), name=f"visionality-revocations-{i}") for i in range(len(self.sources))
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def poll_once(self) -> int:
        """Poll every source once, concurrently; returns how many records were applied."""
        counts = await asyncio.gather(*(self._poll_source(i) for i in range(len(self.sources))))
        return sum(counts)

    async def _poll_source(self, i: int) -> int:
        source = self.sources[i]
        try:
            # In a worker thread: a slow disk or Redis must not stall the proxy's event loop.
            records, offset = await asyncio.to_thread(source.read_new, self._offsets[i])
        except VisionalityError as e:
            self._record_error(i, str(e))
            return 0
        except Exception as e:  # a bug in a source must not kill the watcher; keep the last good state
            log.exception("revocation source %s failed unexpectedly", source.name)
            self._record_error(i, f"{type(e).__name__}: {e}")
            return 0
        # Applied on the event loop, the thread request hooks run on: no lock needed.
        for record in records:
            self.revocations.add(record)
        self._offsets[i] = offset
        self._last_ok[i] = self._clock()
        if self._errors[i] is not None:
            log.warning("revocation source %s recovered", source.name)
            self._errors[i] = None
        return len(records)

    def _record_error(self, i: int, message: str) -> None:
        if self._errors[i] != message:
            # Logged on change only: at 5 polls a second a down source would otherwise flood the log.
            log.warning("revocation source %s: %s (keeping the last good state)", self.sources[i].name, message)
        self._errors[i] = message

    async def _run(self, i: int) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._poll_source(i)
