"""Smoke test for bench/bench_wire.py: tiny counts, direct + bare mitmdump only, the table comes out.

It checks that the benchmark runs end to end (fake provider, a proxy process, the load generator, the
report and the JSON), not any number: this machine is shared and the numbers are noise at these counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_wire.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"


@pytest.mark.skipif(not MITMDUMP.exists(), reason="mitmdump is not installed next to this Python")
def test_bench_wire_prints_table_for_direct_and_mitmdump(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--targets",
            "direct,mitmdump",
            "--requests",
            "40",
            "--duration",
            "1",
            "--stream-requests",
            "5",
            "--warmup",
            "0.3",
            "--concurrency",
            "4",
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=28,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    header = next((ln for ln in lines if ln.startswith("target ")), None)
    assert header is not None, r.stdout
    for col in ("c1 p50", "c1 p99", "c4 p50", "rps c4", "cpu ms/req", "ttfb p50", "rss MB", "+lat c1", "+ttfb"):
        assert col in header, header
    rows = {ln.split()[0]: ln.split() for ln in lines[lines.index(header) + 2 :] if ln.strip()}
    assert set(rows) >= {"direct", "mitmdump"}, r.stdout
    # Both measured something: numbers, not "-", in the latency columns.
    for name in ("direct", "mitmdump"):
        float(rows[name][1]), float(rows[name][2])
    doc = json.loads(out_json.read_text())
    by_name = {res["target"]: res for res in doc["results"]}
    assert by_name["direct"]["status"] == "ok" and by_name["mitmdump"]["status"] == "ok", doc
    assert by_name["mitmdump"]["c1"]["ok"] > 0 and by_name["mitmdump"]["c1"]["errors"] == 0, doc
    assert by_name["mitmdump"]["stream_ttfb"]["ok"] > 0, doc
    assert by_name["mitmdump"]["peak_rss_mb"] > 0 and by_name["mitmdump"]["cpu_ms_per_req"] is not None, doc


def test_bench_wire_rejects_unknown_target() -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH), "--targets", "nope"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2 and "unknown target" in r.stderr, r.stderr
