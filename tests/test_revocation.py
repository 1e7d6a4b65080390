"""Revocation: records, the O(1) set, the append-only file, the Redis feed and the watcher."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from visionality.envelope import Claims
from visionality.errors import RevokedError
from visionality.revocation import (
    KeyRevoked,
    RedisRevocationFeed,
    RevocationError,
    RevocationFile,
    RevocationRecord,
    RevocationSet,
    RevocationUnavailable,
    RevocationWatcher,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = datetime(2026, 12, 3, 19, 0, 0, tzinfo=UTC)


def _claims(jti: str = "key_1", sub: str = "00u_ada", iat: datetime = T0) -> Claims:
    return Claims(
        iss="https://visionality.acme.example",
        sub=sub,
        email="ada@acme.example",
        jti=jti,
        iat=iat,
        exp=None,
        nbf=None,
        project="checkout",
        task="PROJ-128",
        memo=None,
        url=None,
        budget=None,
    )


def _record(kind: str = "jti", value: str = "key_1", not_before: datetime = T0) -> RevocationRecord:
    return RevocationRecord(
        ts=T0, kind=kind, value=value, not_before=not_before, reason="laptop stolen", by="admin@acme.example"
    )  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- records / set


def test_record_json_round_trip_has_exactly_the_documented_fields() -> None:
    record = _record("sub", "00u_ada", T0 + timedelta(minutes=5))
    data = json.loads(record.to_json())
    assert data == {
        "ts": "2026-12-03T19:00:00Z",
        "kind": "sub",
        "value": "00u_ada",
        "not_before": "2026-12-03T19:05:00Z",
        "reason": "laptop stolen",
        "by": "admin@acme.example",
    }
    assert RevocationRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[]",
        '{"ts":"2026-12-03T19:00:00Z","kind":"kid","value":"x","not_before":"2026-12-03T19:00:00Z","reason":"r","by":"b"}',
        '{"ts":"2026-12-03T19:00:00","kind":"jti","value":"x","not_before":"2026-12-03T19:00:00Z","reason":"r","by":"b"}',
        '{"ts":"2026-12-03T19:00:00Z","kind":"jti","value":"","not_before":"2026-12-03T19:00:00Z","reason":"r","by":"b"}',
        '{"ts":"2026-12-03T19:00:00Z","kind":"jti","value":"x","reason":"r","by":"b"}',
    ],
)
def test_malformed_records_are_refused(line: str) -> None:
    with pytest.raises(RevocationError):
        RevocationRecord.from_json(line)


def test_revoked_by_jti() -> None:
    revocations = RevocationSet([_record("jti", "key_1")])
    assert revocations.check(_claims(jti="key_1")) == "laptop stolen"
    assert revocations.check(_claims(jti="key_2")) is None
    with pytest.raises(KeyRevoked) as info:
        revocations.ensure_not_revoked(_claims(jti="key_1"))
    assert isinstance(info.value, RevokedError)
    assert info.value.kind == "jti" and info.value.reason == "laptop stolen"
    assert "laptop" not in str(info.value)  # the operator's reason is for the ledger, not the client


def test_revoked_by_subject_only_for_keys_issued_before() -> None:
    revocations = RevocationSet([_record("sub", "00u_ada", not_before=T0)])
    assert revocations.check(_claims(sub="00u_ada", iat=T0 - timedelta(days=3))) == "laptop stolen"
    assert revocations.check(_claims(sub="00u_ada", iat=T0 - timedelta(seconds=1))) == "laptop stolen"
    assert revocations.check(_claims(sub="00u_ada", iat=T0)) is None  # issued at/after the cut-off
    assert revocations.check(_claims(sub="00u_ada", iat=T0 + timedelta(hours=1))) is None
    assert revocations.check(_claims(sub="00u_bob", iat=T0 - timedelta(days=3))) is None
    with pytest.raises(KeyRevoked) as info:
        revocations.ensure_not_revoked(_claims(sub="00u_ada", iat=T0 - timedelta(days=3)))
    assert info.value.kind == "sub"


def test_later_subject_cutoff_wins_and_earlier_one_does_not_narrow_it() -> None:
    revocations = RevocationSet()
    revocations.add(_record("sub", "00u_ada", not_before=T0 + timedelta(days=1)))
    revocations.add(_record("sub", "00u_ada", not_before=T0))
    assert revocations.check(_claims(sub="00u_ada", iat=T0 + timedelta(hours=1))) is not None
    assert len(revocations) == 1 and revocations.records_applied == 2


def test_check_is_constant_time_in_the_number_of_revocations() -> None:
    revocations = RevocationSet()
    for i in range(10_000):
        revocations.add(_record("jti", f"key_{i}"))
        revocations.add(_record("sub", f"sub_{i}"))
    assert len(revocations) == 20_000
    claims = _claims(jti="key_live", sub="sub_live")
    start = time.perf_counter()
    for _ in range(10_000):
        revocations.check(claims)
    assert (time.perf_counter() - start) / 10_000 < 20e-6  # dict look-ups, not a scan


# ---------------------------------------------------------------------------------------------- file


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "revocations.jsonl"


def test_append_writes_one_fsynced_line_and_load_reads_it(log_path: Path) -> None:
    log = RevocationFile(log_path)
    record = log.append("jti", "key_1", "laptop stolen", "admin@acme.example", now=T0)
    assert log_path.read_text() == record.to_json() + "\n"
    assert record.not_before == T0
    revocations = log.load()
    assert revocations.check(_claims(jti="key_1")) == "laptop stolen"


def test_append_validates_before_writing(log_path: Path) -> None:
    log = RevocationFile(log_path)
    with pytest.raises(RevocationError, match="kind"):
        log.append("kid", "key_1", "r", "b")  # type: ignore[arg-type]
    with pytest.raises(RevocationError, match="by"):
        log.append("jti", "key_1", "r", "")
    assert not log_path.exists()


def test_missing_file_means_no_revocations(log_path: Path) -> None:
    log = RevocationFile(log_path)
    assert log.read_new(0) == ([], 0)
    assert len(log.load()) == 0


def test_incremental_reads_only_the_appended_bytes(log_path: Path) -> None:
    log = RevocationFile(log_path)
    log.append("jti", "key_1", "r1", "admin")
    records, offset = log.read_new(0)
    assert [r.value for r in records] == ["key_1"] and offset == log_path.stat().st_size
    assert log.read_new(offset) == ([], offset)  # unchanged: nothing read
    log.append("jti", "key_2", "r2", "admin")
    log.append("sub", "00u_ada", "left", "hris")
    records, offset2 = log.read_new(offset)
    assert [r.value for r in records] == ["key_2", "00u_ada"]
    assert offset2 == log_path.stat().st_size


def test_torn_last_line_is_ignored_until_completed(log_path: Path) -> None:
    log = RevocationFile(log_path)
    log.append("jti", "key_1", "r1", "admin")
    full = _record("jti", "key_2").to_json() + "\n"
    with open(log_path, "ab") as f:
        f.write(full[:25].encode())  # a writer is mid-line
    records, offset = log.read_new(0)
    assert [r.value for r in records] == ["key_1"]
    assert log.read_new(offset) == ([], offset)  # still incomplete: nothing, offset unchanged
    with open(log_path, "ab") as f:
        f.write(full[25:].encode())  # the writer finishes
    records, offset = log.read_new(offset)
    assert [r.value for r in records] == ["key_2"]
    assert offset == log_path.stat().st_size


def test_fragment_of_a_crashed_writer_does_not_swallow_the_next_record(log_path: Path) -> None:
    log = RevocationFile(log_path)
    log.append("jti", "key_1", "r1", "admin")
    with open(log_path, "ab") as f:
        f.write(b'{"ts":"2026-12-03T19:0')  # the writer died here, no newline will ever follow
    log.append("jti", "key_2", "r2", "admin")
    revocations = log.load()
    assert revocations.check(_claims(jti="key_1")) is not None
    assert revocations.check(_claims(jti="key_2")) is not None  # not glued onto the fragment


def test_malformed_line_is_skipped_and_later_records_still_apply(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = RevocationFile(log_path)
    log_path.write_text("garbage\n")
    log.append("jti", "key_2", "r2", "admin")
    assert log.load().check(_claims(jti="key_2")) == "r2"
    assert "skipped a malformed revocation record" in caplog.text


def test_replaced_or_shrunk_file_is_read_again(log_path: Path) -> None:
    log = RevocationFile(log_path)
    log.append("jti", "key_1", "r1", "admin")
    log.append("jti", "key_2", "r2", "admin")
    _, offset = log.read_new(0)
    replacement = log_path.with_suffix(".new")
    replacement.write_text(_record("jti", "key_3").to_json() + "\n")
    os.replace(replacement, log_path)
    records, offset = log.read_new(offset)
    assert [r.value for r in records] == ["key_3"]
    assert offset == log_path.stat().st_size


def test_concurrent_appends_never_interleave(log_path: Path) -> None:
    # flock is per open file description, so separate RevocationFile objects in threads contend like processes.
    def writer(n: int) -> None:
        log = RevocationFile(log_path)
        for i in range(25):
            log.append("jti", f"key_{n}_{i}", "bulk leaver import " + "x" * 200, "hris")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log_path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) - 1 == 100
    assert len(RevocationFile(log_path).load()) == 100


def test_unreadable_file_raises_our_error(tmp_path: Path) -> None:
    directory = tmp_path / "dir.jsonl"
    directory.mkdir()
    with pytest.raises(RevocationUnavailable):
        RevocationFile(directory).read_new(0)
    with pytest.raises(RevocationUnavailable):
        RevocationFile(directory).append("jti", "k", "r", "b")


# ---------------------------------------------------------------------------------------------- redis


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"test-visionality-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_redis_feed_append_and_incremental_read(redis_prefix: str) -> None:
    feed = RedisRevocationFeed(REDIS_URL, prefix=redis_prefix)
    try:
        assert feed.read_new(0) == ([], 0)
        feed.append("jti", "key_1", "r1", "admin", now=T0)
        feed.append("sub", "00u_ada", "left", "hris", now=T0)
        records, offset = feed.read_new(0)
        assert [(r.kind, r.value) for r in records] == [("jti", "key_1"), ("sub", "00u_ada")]
        assert offset == 2
        assert feed.read_new(2) == ([], 2)
        feed.append("jti", "key_2", "r2", "admin")
        records, offset = feed.read_new(2)
        assert [r.value for r in records] == ["key_2"] and offset == 3
        assert len(feed.load()) == 3
    finally:
        feed.close()


def test_redis_feed_skips_a_foreign_entry(redis_prefix: str) -> None:
    feed = RedisRevocationFeed(REDIS_URL, prefix=redis_prefix)
    try:
        client = redis.Redis.from_url(REDIS_URL)
        client.rpush(f"{redis_prefix}:revocations", b"{not json")
        client.close()
        feed.append("jti", "key_1", "r1", "admin")
        records, offset = feed.read_new(0)
        assert [r.value for r in records] == ["key_1"] and offset == 2
    finally:
        feed.close()


def test_redis_unreachable_raises_our_error_without_leaking_the_password() -> None:
    feed = RedisRevocationFeed("redis://user:s3cret@127.0.0.1:1/0")
    with pytest.raises(RevocationUnavailable) as info:
        feed.read_new(0)
    assert "s3cret" not in str(info.value)
    with pytest.raises(RevocationUnavailable):
        feed.append("jti", "k", "r", "b")


# ---------------------------------------------------------------------------------------------- watcher


def test_watcher_applies_a_file_revocation_within_one_second(log_path: Path) -> None:
    async def scenario() -> float:
        revocations = RevocationSet()
        log = RevocationFile(log_path)
        watcher = RevocationWatcher(revocations, [RevocationFile(log_path)])
        await watcher.start()
        try:
            assert watcher.healthy
            assert revocations.check(_claims(jti="key_1")) is None
            start = time.monotonic()
            await asyncio.to_thread(log.append, "jti", "key_1", "laptop stolen", "admin")
            while revocations.check(_claims(jti="key_1")) is None:
                assert time.monotonic() - start < 3, "revocation never arrived"
                await asyncio.sleep(0.01)
            return time.monotonic() - start
        finally:
            await watcher.stop()

    assert asyncio.run(scenario()) < 1.0


def test_watcher_start_loads_existing_records(log_path: Path) -> None:
    RevocationFile(log_path).append("sub", "00u_ada", "left", "hris", now=T0)

    async def scenario() -> RevocationSet:
        revocations = RevocationSet()
        watcher = RevocationWatcher(revocations, [RevocationFile(log_path)])
        await watcher.start()
        await watcher.stop()
        return revocations

    assert asyncio.run(scenario()).check(_claims(sub="00u_ada", iat=T0 - timedelta(days=1))) == "left"


def test_watcher_applies_a_redis_revocation_within_one_second(redis_prefix: str) -> None:
    async def scenario() -> float:
        revocations = RevocationSet()
        feed = RedisRevocationFeed(REDIS_URL, prefix=redis_prefix)
        publisher = RedisRevocationFeed(REDIS_URL, prefix=redis_prefix)
        watcher = RevocationWatcher(revocations, [feed])
        await watcher.start()
        try:
            start = time.monotonic()
            await asyncio.to_thread(publisher.append, "sub", "00u_ada", "left", "hris")
            while revocations.check(_claims(sub="00u_ada", iat=T0)) is None:
                assert time.monotonic() - start < 3, "revocation never arrived"
                await asyncio.sleep(0.01)
            return time.monotonic() - start
        finally:
            await watcher.stop()
            feed.close()
            publisher.close()

    assert asyncio.run(scenario()) < 1.0


class _FlakySource:
    name = "flaky"

    def __init__(self) -> None:
        self.fail = False
        self.records: list[RevocationRecord] = []

    def read_new(self, offset: int) -> tuple[list[RevocationRecord], int]:
        if self.fail:
            raise RevocationUnavailable("redis down")
        return self.records[offset:], len(self.records)


def test_watcher_keeps_last_good_state_and_fails_closed_after_the_grace_period() -> None:
    now = [1000.0]
    source = _FlakySource()
    source.records.append(_record("jti", "key_1"))
    revocations = RevocationSet()
    watcher = RevocationWatcher(revocations, [source], fail_closed_after_s=10.0, clock=lambda: now[0])
    assert not watcher.healthy  # never read: nothing to trust yet

    async def poll() -> None:
        await watcher.poll_once()

    asyncio.run(poll())
    assert watcher.healthy and watcher.last_error is None
    source.fail = True
    now[0] += 5
    asyncio.run(poll())
    assert watcher.last_error == "redis down"
    assert watcher.healthy  # a blip inside the grace period keeps serving on the last good state
    assert revocations.check(_claims(jti="key_1")) is not None
    now[0] += 6  # 11 s since the last good read
    asyncio.run(poll())
    assert not watcher.healthy
    assert revocations.check(_claims(jti="key_1")) is not None  # state kept
    source.fail = False
    source.records.append(_record("jti", "key_2"))
    asyncio.run(poll())
    assert watcher.healthy and watcher.last_error is None
    assert revocations.check(_claims(jti="key_2")) is not None
    assert watcher.status()[0]["offset"] == 2


def test_watcher_with_unreachable_redis_is_unhealthy(log_path: Path) -> None:
    async def scenario() -> tuple[bool, str | None]:
        watcher = RevocationWatcher(
            RevocationSet(),
            [RevocationFile(log_path), RedisRevocationFeed("redis://127.0.0.1:1/0")],
            fail_closed_after_s=0.5,
        )
        await watcher.start()
        await asyncio.sleep(0.7)
        try:
            return watcher.healthy, watcher.last_error
        finally:
            await watcher.stop()

    healthy, error = asyncio.run(scenario())
    assert not healthy
    assert error is not None and "cannot read revocations" in error


def test_watcher_survives_a_buggy_source() -> None:
    class Broken:
        name = "broken"

        def read_new(self, offset: int) -> tuple[list[RevocationRecord], int]:
            raise KeyError("bug")

    watcher = RevocationWatcher(RevocationSet(), [Broken()])
    asyncio.run(watcher.poll_once())
    assert watcher.last_error is not None and "KeyError" in watcher.last_error
    assert not watcher.healthy


def test_watcher_configuration_is_checked() -> None:
    with pytest.raises(RevocationError, match="no sources"):
        RevocationWatcher(RevocationSet(), [])
    with pytest.raises(RevocationError, match="interval_s"):
        RevocationWatcher(RevocationSet(), [_FlakySource()], interval_s=0)


def test_redis_feed_that_shrank_is_read_again(redis_prefix: str) -> None:
    feed = RedisRevocationFeed(REDIS_URL, prefix=redis_prefix)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        feed.append("jti", "key_1", "r1", "admin")
        feed.append("jti", "key_2", "r2", "admin")
        _, offset = feed.read_new(0)
        client.delete(feed.key)
        feed.append("jti", "key_3", "r3", "admin")
        records, offset = feed.read_new(offset)
        assert [r.value for r in records] == ["key_3"] and offset == 1
    finally:
        client.close()
        feed.close()


def test_a_hanging_source_does_not_delay_file_revocations(log_path: Path) -> None:
    class Hanging:
        name = "hanging redis"

        def read_new(self, offset: int) -> tuple[list[RevocationRecord], int]:
            time.sleep(1.5)  # a blackholed Redis waiting out its socket timeout
            raise RevocationUnavailable("timeout")

    async def scenario() -> float:
        revocations = RevocationSet()
        watcher = RevocationWatcher(revocations, [RevocationFile(log_path), Hanging()])
        await watcher.start()
        try:
            start = time.monotonic()
            await asyncio.to_thread(RevocationFile(log_path).append, "jti", "key_1", "stolen", "admin")
            while revocations.check(_claims(jti="key_1")) is None:
                assert time.monotonic() - start < 5, "revocation never arrived"
                await asyncio.sleep(0.01)
            return time.monotonic() - start
        finally:
            await watcher.stop()

    assert asyncio.run(scenario()) < 1.0
