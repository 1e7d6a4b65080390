"""End to end, issue 3: kill -9 with streams in flight loses no call and counts none twice; a full or
read-only ledger disk makes the appliance refuse (503) instead of serving unrecorded traffic."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Appliance, FakeProviderProc
from .test_e2e_budget import _key_id

pytestmark = pytest.mark.e2e

STREAM = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "a long streamed answer please"}],
    "max_tokens": 300,
    "stream": True,
}


async def _streams(url: str, key: str, n: int, started: asyncio.Event) -> list[str]:
    """n concurrent slow streams; returns how each ended (never raises: the appliance dies under them)."""
    outcomes: list[str] = []

    async def one(c: httpx.AsyncClient, i: int) -> None:
        try:
            async with c.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json=STREAM,
                headers={
                    "authorization": f"Bearer {key}",
                    "x-fake-chunks": "40",
                    "x-fake-chunk-delay-ms": "50",
                },
            ) as r:
                async for _ in r.aiter_bytes():
                    started.set()
            outcomes.append("completed")
        except Exception as e:
            outcomes.append(type(e).__name__)

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as c:
        await asyncio.gather(*[one(c, i) for i in range(n)])
    return outcomes


def _crash_round(app: Appliance, provider: FakeProviderProc, key: str) -> dict[str, int]:
    async def run() -> list[str]:
        started = asyncio.Event()
        task = asyncio.create_task(_streams(app.base_url, key, 32, started))
        await asyncio.wait_for(started.wait(), 20)
        await asyncio.sleep(0.4)  # every stream is mid-flight now (40 chunks x 50 ms each)
        app.kill()
        return await task

    asyncio.run(run())
    app.start()
    time.sleep(1.0)  # the provider logs disconnected streams as it notices them
    # This test's streams only: a call a previous test left running may still be logged by the shared provider.
    seen = [r for r in provider.requests() if r["headers"].get("x-fake-chunks") == "40"]
    rows = app.query(f"SELECT commit_id, decision, cost_usd, reserved_usd FROM commits WHERE key_id = '{_key_id(key)}'")
    return {
        "provider": len(seen),
        "rows": len(rows),
        "unique": len({r["commit_id"] for r in rows}),
        "unsettled": sum(r["decision"] == "unsettled" for r in rows),
    }


def test_kill_9_with_32_streams_in_flight_loses_nothing(appliance: Appliance, provider: FakeProviderProc) -> None:
    key = appliance.key(task="CRASH-1")
    totals = []
    for round_no in range(3):
        counts = _crash_round(appliance, provider, key)
        totals.append(counts)
        assert counts["rows"] == counts["unique"], f"round {round_no}: duplicated rows {counts}"
        assert counts["rows"] == counts["provider"], f"round {round_no}: ledger vs provider {counts}"
        assert counts["unsettled"] >= 1, f"round {round_no}: the kill should have cut streams off {counts}"
    print("crash rounds:", totals)
    out = appliance.cli("ledger", "verify")
    assert "ok" in out.lower() or "verified" in out.lower(), out
    # Unsettled calls are charged their reserved worst case: budgets never under-count a crash.
    rows = appliance.query("SELECT cost_usd, reserved_usd FROM commits WHERE decision = 'unsettled'")
    assert rows and all(r["cost_usd"] == r["reserved_usd"] for r in rows)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "ledger-disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _ledger_on(app: Appliance, mnt: Path) -> None:
    ledger = app.home / "ledger"
    for item in ledger.iterdir():
        if item.is_dir():
            shutil.copytree(item, mnt / item.name)
        else:
            shutil.copy2(item, mnt / item.name)
    shutil.rmtree(ledger)
    ledger.symlink_to(mnt)


def _call(app: Appliance, key: str) -> int:
    with httpx.Client(base_url=app.base_url, timeout=30) as c:
        r = c.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3},
        )
        return r.status_code


def test_full_disk_refuses_with_503(make_appliance: Any, provider: FakeProviderProc, small_disk: Path) -> None:
    app = make_appliance(start=False)
    _ledger_on(app, small_disk)
    app.start()
    key = app.key()
    assert _call(app, key) == 200
    # Fill the disk, leaving a few bytes.
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass  # ENOSPC: the disk is full
    before = len(provider.requests())
    statuses = [_call(app, key) for _ in range(20)]
    assert 503 in statuses, statuses
    first_503 = statuses.index(503)
    assert all(s == 503 for s in statuses[first_503:]), f"once the ledger fails it stays closed: {statuses}"
    # No call was served that the ledger could not record: upstream saw only the ones before the failure.
    assert len(provider.requests()) - before <= first_503


def test_unwritable_ledger_refuses_with_503(make_appliance: Any, provider: FakeProviderProc) -> None:
    """The ledger becomes unwritable under a running appliance (chattr +i: even already-open files refuse
    writes, as after an emergency read-only remount). Every new call is refused; nothing goes upstream."""
    app = make_appliance()
    key = app.key()
    assert _call(app, key) == 200
    ledger = app.home / "ledger"
    r = subprocess.run(["chattr", "-R", "+i", str(ledger)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"chattr +i not available here: {r.stderr.decode().strip()}")
    try:
        before = len(provider.requests())
        statuses = [_call(app, key) for _ in range(5)]
        assert set(statuses) == {503}, statuses
        assert len(provider.requests()) == before
    finally:
        subprocess.run(["chattr", "-R", "-i", str(ledger)], check=False)


def test_the_ledger_holds_no_prompt_completion_provider_key_or_envelope(
    appliance: Appliance, provider: FakeProviderProc
) -> None:
    """Issue 3 "never in the ledger": every byte under the ledger directory, WAL and sealed files alike."""
    from .harness import OPENAI_KEY

    marker = "zebra-quartz-7c1f"  # a prompt word no metadata field could contain
    key = appliance.key(task="SEC-1")
    out = appliance.openai(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say {marker}"}], max_tokens=20
    )
    completion = out.choices[0].message.content or ""
    assert completion
    appliance.stop()  # seals what is pending: the Parquet files are checked too
    appliance.start()
    blobs = b"".join(p.read_bytes() for p in (appliance.home / "ledger").rglob("*") if p.is_file())
    assert b"parquet" in b"".join(p.name.encode() for p in (appliance.home / "ledger").rglob("*.parquet"))
    for secret in (marker, completion, OPENAI_KEY, key, key.split(".")[2]):
        assert secret.encode() not in blobs, f"{secret[:20]}... is in the ledger"
    (row,) = appliance.query("SELECT key_id, envelope_digest FROM commits WHERE task = 'SEC-1'")
    assert row["key_id"] and len(row["envelope_digest"]) == 64
