"""The events stream: appends from several processes, sealed with the same tamper evidence."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from visionality.errors import LedgerError
from visionality.ledger import EventLog, open_views, run_query, verify

from .test_ledger_ledger import KEY, KEYS

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from nacl.signing import SigningKey
    from visionality.ledger import EventLog
    log = EventLog(Path(sys.argv[1]), writer_id="cli", signing_key=SigningKey(b"\\x07" * 32), seal_max_rows=16)
    for i in range(20):
        log.append("key.issued", key_id=f"{sys.argv[2]}-{i}", by="test")
    """
)


def test_append_returns_seq_and_fields_may_be_named_kind(tmp_path: Path) -> None:
    log = EventLog(tmp_path, writer_id="cli", signing_key=KEY)
    assert log.append("key.revoked", kind="jti", value="k1", by="ops", urgent=True, note=None) == 0
    assert log.append("config.changed", key="budget.cap", value="100") == 1
    got = run_query(open_views(tmp_path), "SELECT seq, kind, fields FROM events ORDER BY seq")[1]
    assert got[0] == (0, "key.revoked", '{"by":"ops","kind":"jti","note":null,"urgent":true,"value":"k1"}')


def test_concurrent_processes_get_unique_contiguous_seqs(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"w{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    got = run_query(
        open_views(tmp_path), "SELECT count(*), count(DISTINCT seq), max(seq), count(DISTINCT fields) FROM events"
    )
    assert got[1] == [(80, 80, 79, 80)]
    report = verify(tmp_path, public_keys=KEYS)
    (stream,) = report.streams
    assert stream.kind == "events" and stream.sealed_rows + stream.wal_rows == 80 and stream.files >= 4


def test_seal_now(tmp_path: Path) -> None:
    log = EventLog(tmp_path, writer_id="hris", signing_key=KEY)
    log.append("leaver", sub="bob")
    assert len(log.seal()) == 1 and log.seal() == []
    assert verify(tmp_path, public_keys=KEYS).streams[0].sealed_rows == 1


def test_values_must_be_scalars(tmp_path: Path) -> None:
    log = EventLog(tmp_path, writer_id="cli", signing_key=KEY)
    with pytest.raises(LedgerError):
        log.append("x", value=1.5)  # type: ignore[arg-type]
    with pytest.raises(LedgerError):
        log.append("")


def test_an_event_removed_from_the_wal_is_caught_by_the_signed_head(tmp_path: Path) -> None:
    from visionality.ledger.wal import scan_segment

    log = EventLog(tmp_path, writer_id="cli", signing_key=KEY, seal_max_rows=100)
    log.append("key.issued", key_id="k1")
    log.append("key.revoked", key_id="k1")  # both still in the WAL, covered by the head
    seg = next((tmp_path / "streams/events/cli/wal").glob("*.wal"))
    with open(seg, "r+b") as f:
        f.truncate(scan_segment(seg).records[-1].offset)  # the revocation, removed cleanly
    with pytest.raises(LedgerError, match="covers 2 rows"):  # VerificationError is one
        verify(tmp_path, public_keys={"*": KEY.verify_key})
    with pytest.raises(LedgerError, match="covers 2 rows"):
        log.append("key.issued", key_id="k2")
