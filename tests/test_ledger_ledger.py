"""The appliance ledger: hot-path append, group commit, sealing, recovery after kill -9, fail closed."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from visionality.commit import CommitRecord, Decision, new_commit_id
from visionality.errors import LedgerError, LedgerUnavailable
from visionality.ledger import Ledger, open_views, run_query, verify
from visionality.ledger.checkpoint import parse_note
from visionality.ledger.stream import StreamPaths, read_checkpoint_log, read_manifest
from visionality.ledger.wal import segment_paths

KEY = SigningKey(b"\x07" * 32)
KEYS = {"*": KEY.verify_key}


def record(appliance_id: str = "n1", **kw: object) -> CommitRecord:
    base: dict[str, object] = dict(
        commit_id=new_commit_id(),
        ts=CommitRecord.now(),
        appliance_id=appliance_id,
        decision=Decision.ALLOWED,
        http_status=200,
        project="PROJ",
        sub="alice",
        cost_usd=Decimal("0.0012"),
        reserved_usd=Decimal("0.05"),
        input_tokens=100,
        output_tokens=10,
    )
    base.update(kw)
    return CommitRecord(**base)  # type: ignore[arg-type]


def ledger(root: Path, appliance_id: str = "n1", **kw: object) -> Ledger:
    return Ledger(root, appliance_id=appliance_id, signing_key=KEY, **kw)  # type: ignore[arg-type]


def rows(root: Path, sql: str) -> list[tuple[object, ...]]:
    return run_query(open_views(root), sql)[1]


async def crash(led: Ledger) -> None:
    """Simulate kill -9 in-process: stop the tasks, drop the descriptors, no flush, no seal."""
    led.healthy = False  # first, so the committer thread stops without a last fsync
    for t in led._tasks:
        t.cancel()
    await asyncio.gather(*led._tasks, return_exceptions=True)
    led._stopping_commit = True
    led._commit_wake.set()
    if led._committer is not None:
        led._committer.join()
    if led._wal is not None:
        os.close(led._wal.fd)
    if led._lock_fd is not None:
        os.close(led._lock_fd)
    led.healthy = False


def test_append_sets_seq_and_hash_and_is_queryable_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        recs = [record(), record(decision=Decision.BLOCKED_BUDGET, http_status=402, cost_usd=Decimal(0))]
        assert [led.append(r) for r in recs] == [0, 1]
        assert recs[1].seq == 1 and recs[1].row_hash and len(recs[1].row_hash) == 64
        got = rows(tmp_path, "SELECT seq, decision, row_hash, cost_usd FROM commits ORDER BY seq")
        assert got[1][:3] == (1, "blocked_budget", recs[1].row_hash) and got[0][3] == Decimal("0.0012")
        await led.close()

    asyncio.run(main())


def test_seal_writes_read_only_files_checkpoints_and_manifest(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path, seal_max_rows=40, seal_max_age_s=60)
        await led.start()
        for i in range(100):
            led.append(record())
            if i % 10 == 9:
                await asyncio.sleep(0.08)  # let the sealer run
        await led.close()

    asyncio.run(main())
    files = sorted((tmp_path / "commits").glob("date=*/*.parquet"))
    assert len(files) >= 3
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)
    paths = StreamPaths(tmp_path, "commits", "n1")
    entries = read_manifest(paths.manifest)
    assert [e.data["file"] for e in entries] == [f.relative_to(tmp_path).as_posix() for f in files]
    assert entries[-1].data["tree_size"] == 100
    notes = read_checkpoint_log(paths.checkpoints)
    cp = parse_note(notes[-1][1]["note"]).verify("visionality.ledger/n1/commits", KEY.verify_key)
    assert cp.tree_size == 100
    report = verify(tmp_path, public_keys=KEYS)
    assert report.streams[0].sealed_rows == 100 and report.streams[0].wal_rows == 0
    assert segment_paths(paths.wal_dir) == []  # closed cleanly: every row sealed, WAL empty


def test_seal_by_age(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path, seal_max_age_s=0.1)
        await led.start()
        led.append(record())
        await asyncio.sleep(0.5)
        assert led.sealed_size == 1
        await led.close()

    asyncio.run(main())


def test_intent_is_durable_and_unsettled_exactly_once_after_crashes(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        settled, lost = record(reserved_usd=Decimal("0.30")), record(reserved_usd=Decimal("0.25"))
        await led.append_intent(settled)
        await led.append_intent(lost)
        settled.cost_usd = Decimal("0.01")
        led.append(settled)
        await led.flush()
        await crash(led)

        for _ in range(2):  # recovering twice must not add a second unsettled row
            led = ledger(tmp_path)
            await led.start()
            await crash(led)
        led = ledger(tmp_path)
        await led.start()
        await led.close()
        return None

    asyncio.run(main())
    got = rows(tmp_path, "SELECT decision, cost_usd, reserved_usd, error_code FROM commits ORDER BY seq")
    assert got == [
        ("allowed", Decimal("0.010000000"), Decimal("0.300000000"), None),
        ("unsettled", Decimal("0.250000000"), Decimal("0.250000000"), "unsettled_after_restart"),
    ]
    verify(tmp_path, public_keys=KEYS)


def test_open_intent_survives_seals_and_is_settled_later(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path, seal_max_rows=5)
        await led.start()
        long_call = record()
        await led.append_intent(long_call)
        for _ in range(4):
            for _ in range(6):
                led.append(record())
            await asyncio.sleep(0.15)  # several seals retire the intent's segment
        assert led.sealed_size >= 20
        await crash(led)
        led = ledger(tmp_path)
        report = await led.start()
        assert report.unsettled == (long_call.commit_id,)
        await led.close()

    asyncio.run(main())
    assert rows(tmp_path, "SELECT count(*) FROM commits WHERE decision = 'unsettled'") == [(1,)]


def test_torn_tail_is_truncated_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        for _ in range(3):
            led.append(record())
        await led.flush()
        wal = led._wal
        assert wal is not None
        os.write(wal.fd, b"\x40\x00\x00\x00\x01\x02")  # a record cut short by the crash
        await crash(led)
        with caplog.at_level(logging.WARNING, logger="visionality.ledger"):
            led = ledger(tmp_path)
            report = await led.start()
        assert report.torn_tail_bytes == 6 and report.next_seq == 3
        assert "torn tail" in caplog.text
        led.append(record())
        await led.close()

    asyncio.run(main())
    assert rows(tmp_path, "SELECT count(*), max(seq) FROM commits") == [(4, 3)]
    verify(tmp_path, public_keys=KEYS)


def test_corruption_in_the_middle_refuses_to_start(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        for _ in range(3):
            led.append(record(memo="x" * 50))
        await led.flush()
        path = led._wal.path  # type: ignore[union-attr]
        await crash(led)
        data = bytearray(path.read_bytes())
        data[data.index(b"xxxxx")] = ord("y")
        path.write_bytes(bytes(data))
        with pytest.raises(LedgerError, match="damaged"):
            await ledger(tmp_path).start()

    asyncio.run(main())


def test_second_writer_for_the_same_stream_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        with pytest.raises(LedgerError, match="another process"):
            await ledger(tmp_path).start()
        await led.close()

    asyncio.run(main())


def test_not_started_or_closed_refuses(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        with pytest.raises(LedgerUnavailable):
            led.append(record())
        await led.start()
        await led.close()
        with pytest.raises(LedgerUnavailable):
            led.append(record())
        with pytest.raises(LedgerUnavailable):
            await led.append_intent(record())

    asyncio.run(main())


def test_unwritable_ledger_dir_fails_closed(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger directory should be")

    async def main() -> None:
        led = ledger(blocker)
        with pytest.raises(LedgerUnavailable):
            await led.start()
        assert not led.healthy
        with pytest.raises(LedgerUnavailable):
            led.append(record())

    asyncio.run(main())


@pytest.fixture
def tiny_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_makes_append_unavailable(tiny_disk: Path) -> None:
    async def main() -> None:
        led = ledger(tiny_disk, seal_max_rows=10**6, seal_max_age_s=3600)
        await led.start()
        with pytest.raises(LedgerUnavailable):
            for _ in range(100_000):
                led.append(record(memo="m" * 200))
        assert not led.healthy
        with pytest.raises(LedgerUnavailable):
            led.append(record())
        with pytest.raises(LedgerUnavailable):
            await led.append_intent(record())
        await led.close()

    asyncio.run(main())


def test_two_nodes_share_one_ledger_dir(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = ledger(tmp_path, "node-a"), ledger(tmp_path, "node-b")
        await a.start()
        await b.start()
        for i in range(5):
            a.append(record("node-a"))
            if i < 3:
                b.append(record("node-b"))
        await a.close()
        b.append(record("node-b"))  # node-b keeps one row in its WAL
        got = rows(tmp_path, "SELECT appliance_id, count(*), max(seq) FROM commits GROUP BY ALL ORDER BY 1")
        assert got == [("node-a", 5, 4), ("node-b", 4, 3)]
        report = verify(tmp_path, public_keys=KEYS)
        assert {(s.stream_id, s.sealed_rows, s.wal_rows) for s in report.streams} == {
            ("node-a", 5, 0),
            ("node-b", 0, 4),
        }
        await b.close()

    asyncio.run(main())


_CHILD = textwrap.dedent(
    """
    import asyncio, os, random, sys
    from decimal import Decimal
    from pathlib import Path
    from nacl.signing import SigningKey
    from visionality.commit import CommitRecord, Decision, new_commit_id
    from visionality.ledger import Ledger

    root, provider_log = Path(sys.argv[1]), sys.argv[2]

    async def call(led, seen):
        while True:
            r = CommitRecord(commit_id=new_commit_id(), ts=CommitRecord.now(), appliance_id="n1",
                             decision=Decision.ALLOWED, http_status=200, reserved_usd=Decimal("0.5"))
            await led.append_intent(r)
            os.write(seen, (r.commit_id + "\\n").encode())  # the fake provider has now seen the call
            await asyncio.sleep(random.random() * 0.02)  # streaming
            r.cost_usd = Decimal("0.01")
            led.append(r)

    async def main():
        led = Ledger(root, appliance_id="n1", signing_key=SigningKey(b"\\x07" * 32), seal_max_rows=300)
        await led.start()
        seen = os.open(provider_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        print("ready", flush=True)
        await asyncio.gather(*(call(led, seen) for _ in range(32)))

    asyncio.run(main())
    """
)


def test_sigkill_with_32_calls_in_flight_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    root, provider_log = tmp_path / "ledger", tmp_path / "provider.log"
    for round_no in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), str(provider_log)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.4 + 0.3 * round_no)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    async def recover() -> None:
        led = ledger(root)
        await led.start()
        await led.close()

    asyncio.run(recover())
    seen = provider_log.read_text().split()
    got = rows(root, "SELECT commit_id, count(*), max(decision) FROM commits GROUP BY commit_id")
    per_call = {cid: (n, decision) for cid, n, decision in got}
    assert len(seen) > 100
    missing = [cid for cid in seen if cid not in per_call]
    assert not missing, f"{len(missing)} calls reached the provider but are not in the ledger"
    assert all(n == 1 for n, _ in per_call.values()), "a call was counted twice"
    assert rows(root, "SELECT count(*) = count(DISTINCT seq), max(seq) + 1 = count(*) FROM commits") == [(True, True)]
    assert any(d == "unsettled" for _, d in per_call.values())
    verify(root, public_keys=KEYS)


def test_group_commit_batches_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visionality.ledger.wal import SegmentWriter

    syncs: list[float] = []
    real_sync = SegmentWriter.sync

    def counting_sync(self: SegmentWriter) -> None:
        syncs.append(time.monotonic())
        real_sync(self)

    async def main() -> None:
        led = ledger(tmp_path, group_commit_ms=5)
        await led.start()
        monkeypatch.setattr(SegmentWriter, "sync", counting_sync)
        t0 = time.monotonic()
        for _ in range(500):
            led.append(record())  # no fsync on the hot path: the committer thread batches them
        ticks = (time.monotonic() - t0) / 0.005
        await asyncio.sleep(0.2)
        assert 1 <= len(syncs) <= ticks + 3 < 500
        before = len(syncs)
        await asyncio.gather(*(led.append_intent(record()) for _ in range(32)))
        assert len(syncs) - before <= 8  # 32 intents share a few fsyncs
        await led.close()

    asyncio.run(main())


def test_lone_intent_syncs_on_the_callers_thread_and_concurrent_ones_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call in flight: its intent is fsynced where it waits (no hand-off to the committer thread, and
    no wait for a group that is gathering behind a final row). Several in flight: the committer groups."""
    import threading

    from visionality.ledger.wal import SegmentWriter

    threads: list[str] = []
    real_sync = SegmentWriter.sync

    def recording_sync(self: SegmentWriter) -> None:
        threads.append(threading.current_thread().name)
        real_sync(self)

    async def main() -> None:
        led = ledger(tmp_path, group_commit_ms=50)  # a long gathering window that a lone intent must cut short
        await led.start()
        monkeypatch.setattr(SegmentWriter, "sync", recording_sync)
        main_thread = threading.current_thread().name
        for _ in range(5):
            rec = record()
            led.append(record())  # a final row wakes the committer, which starts gathering a group
            threads.clear()
            await led.append_intent(rec)
            assert led._synced == led._writes  # durable on return
            assert threads == [main_thread]
            led.append(rec)
        threads.clear()
        first = record()
        await led.append_intent(first)  # stays open: the next ones are not alone
        threads.clear()
        await asyncio.gather(*(led.append_intent(record()) for _ in range(8)))
        assert threads and main_thread not in threads
        await led.close()

    asyncio.run(main())


def test_sealing_failure_fails_closed_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import visionality.ledger.ledger as ledger_module

    def broken_seal(*args: object, **kw: object) -> list[str]:
        raise LedgerUnavailable("simulated: disk refused the Parquet file")

    async def main() -> None:
        led = ledger(tmp_path, seal_max_rows=10)
        await led.start()
        monkeypatch.setattr(ledger_module, "seal_rows", broken_seal)
        for _ in range(12):
            led.append(record())
        for _ in range(50):
            await asyncio.sleep(0.02)
            if not led.healthy:
                break
        assert not led.healthy
        with pytest.raises(LedgerUnavailable, match="simulated"):
            led.append(record())
        await led.close()
        monkeypatch.undo()
        led = ledger(tmp_path)
        report = await led.start()
        assert report.rows_resealed == 12
        await led.close()

    asyncio.run(main())
    assert rows(tmp_path, "SELECT count(*), max(seq) FROM commits") == [(12, 11)]
    verify(tmp_path, public_keys=KEYS)


def test_failed_start_releases_the_stream(tmp_path: Path) -> None:
    async def main() -> None:
        led = ledger(tmp_path)
        await led.start()
        for _ in range(3):
            led.append(record(memo="x" * 40))
        await led.flush()
        path = led._wal.path  # type: ignore[union-attr]
        await crash(led)
        good = path.read_bytes()
        bad = bytearray(good)
        bad[bad.index(b"xxxx")] = ord("y")
        path.write_bytes(bytes(bad))
        with pytest.raises(LedgerError, match="damaged"):
            await ledger(tmp_path).start()
        path.write_bytes(good)  # the operator restores the segment; the same process can start again
        led = ledger(tmp_path)
        report = await led.start()
        assert report.next_seq == 3
        await led.close()

    asyncio.run(main())
