"""Ledger benchmark (issue 3, "Performance"): prints the figures the issue asks for.

1. Sustained append with durability on (WAL + group commit fsync every 2 ms, sealer running): a paced
   run at --rate rows/s measuring the added latency of ``append()`` (p50/p99/max), then an unpaced run
   for the maximum rate, sampling RSS while files are sealed.
2. ``verify`` over the rows the append phases wrote (1,000,000 by default).
3. A DuckDB aggregate (spend by project by day) over --query-rows rows (10,000,000 by default), generated
   directly as Parquet with pyarrow in the ledger layout (it measures query speed, not the write path).

    .venv/bin/python bench/bench_ledger.py                   # full run (a few minutes on 2 cores)
    .venv/bin/python bench/bench_ledger.py --quick           # seconds, for a smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from nacl.signing import SigningKey
from visionality.allocators import tune_allocators
from visionality.commit import CommitRecord, Decision, new_commit_id
from visionality.ledger import Ledger, open_views, run_query, verify
from visionality.ledger.canonical import COMMIT_SCHEMA, encode_commit
from visionality.ledger.merkle import leaf_hash
from visionality.ledger.stream import StreamPaths

KEY = SigningKey(b"\x11" * 32)
PROJECTS = [f"PROJ-{i}" for i in range(40)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-4"]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    def __init__(self, every_s: float = 0.25) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append(_rss_mb())

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def _template(i: int) -> CommitRecord:
    return CommitRecord(
        commit_id="",
        ts=CommitRecord.now(),
        appliance_id="bench",
        decision=Decision.ALLOWED,
        http_status=200,
        key_id=f"key-{i % 500}",
        envelope_digest="e" * 64,
        sub=f"user{i % 500}@corp.example",
        email=f"user{i % 500}@corp.example",
        project=PROJECTS[i % len(PROJECTS)],
        task=f"{PROJECTS[i % len(PROJECTS)]}-{i % 97}",
        cost_center="CC-100",
        gl_code="6105",
        provider="openai",
        endpoint="chat.completions",
        model=MODELS[i % len(MODELS)],
        stream=bool(i % 2),
        input_tokens=1200 + i % 300,
        output_tokens=300 + i % 50,
        cached_tokens=i % 64,
        cost_usd=Decimal("0.004215"),
        reserved_usd=Decimal("0.020000"),
        latency_ms=812.5,
        ttft_ms=95.25,
        upstream_request_id=f"req_{i}",
    )


TEMPLATES = [_template(i) for i in range(1000)]


POOL = [replace(t) for t in TEMPLATES]


def _batch(n: int, start: int) -> list[CommitRecord]:
    """Records to append. The ledger keeps no reference to an appended record, so a pool is reused with a
    fresh commit id and time: building a CommitRecord is the wire path's cost, not the ledger's."""
    now = CommitRecord.now()
    out = []
    for k in range(n):
        rec = POOL[(start + k) % 1000]
        rec.commit_id = new_commit_id()
        rec.ts = now
        out.append(rec)
    return out


def _pct(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def append_phase(led: Ledger, *, rows: int, rate: float | None, start: int) -> dict[str, float]:
    """Append ``rows`` rows, paced at ``rate`` rows/s (None: as fast as possible); yields to the loop
    every millisecond so the group-commit and sealer tasks run as they would under real traffic."""
    # Preallocated: a growing list of a million floats (~32 MB) would show up as RSS growth "while sealing".
    lat = array("d", bytes(8 * rows))
    t0 = time.perf_counter()
    cpu0, main0 = time.process_time(), time.thread_time()
    done = 0
    while done < rows:
        # Paced: every millisecond, append the rows that have arrived since the last tick (arrivals at
        # ``rate``); unpaced: bursts of 200. Either way the loop then yields, so the group-commit and
        # sealer tasks run as they would between requests.
        due = rows if rate is None else min(rows, int((time.perf_counter() - t0) * rate) + 1)
        n = min(due - done, 200) if rate is None else due - done
        for k, rec in enumerate(_batch(n, start + done)):
            a = time.perf_counter_ns()
            led.append(rec)
            lat[done + k] = (time.perf_counter_ns() - a) / 1000
        done += n
        await asyncio.sleep(0 if rate is None else 0.001)
    elapsed = time.perf_counter() - t0
    rows_or_1 = max(rows, 1)
    return {
        # CPU per row, whatever the machine's load: the event-loop thread (append + the caller's own work)
        # and the whole process (plus the committer and sealer threads).
        "main_cpu_us_per_row": (time.thread_time() - main0) / rows_or_1 * 1e6,
        "process_cpu_us_per_row": (time.process_time() - cpu0) / rows_or_1 * 1e6,
        "rows": rows,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "append_p50_us": _pct(lat, 50),
        "append_p99_us": _pct(lat, 99),
        "append_p999_us": _pct(lat, 99.9),
        "append_max_us": max(lat),
        "append_mean_us": statistics.fmean(lat),
    }


def noise_floor(samples: int = 20_000) -> dict[str, float]:
    """p50/p99 of append's CPU work alone (encode, leaf hash, CRC) with no WAL, threads or tasks: what this
    machine's scheduler adds to anything that takes as long as one append."""
    lat = []
    recs = _batch(1000, 0)
    for i in range(samples):
        a = time.perf_counter_ns()
        line = encode_commit(recs[i % 1000], seq=i, origin="o", recorded_at="2026-12-03T10:00:00.000001Z")
        zlib.crc32(line)
        leaf_hash(line).hex()
        lat.append((time.perf_counter_ns() - a) / 1000)
    return {"p50_us": _pct(lat, 50), "p99_us": _pct(lat, 99)}


async def intent_phase(led: Ledger, calls: int, concurrency: int) -> dict[str, float]:
    lat: list[float] = []

    async def worker(k: int) -> None:
        for i in range(calls // concurrency):
            rec = replace(TEMPLATES[(k + i) % 1000], commit_id=new_commit_id(), ts=CommitRecord.now())
            a = time.perf_counter_ns()
            await led.append_intent(rec)
            lat.append((time.perf_counter_ns() - a) / 1000)
            led.append(rec)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return {
        "calls": len(lat),
        "calls_per_s": len(lat) / (time.perf_counter() - t0),
        "intent_p50_us": _pct(lat, 50),
        "intent_p99_us": _pct(lat, 99),
    }


async def write_ledger(root: Path, args: argparse.Namespace) -> dict[str, object]:
    led = Ledger(root, appliance_id="bench", signing_key=KEY)
    await led.start()
    out: dict[str, object] = {"noise_floor": noise_floor()}
    with RssSampler() as rss:
        out["paced"] = await append_phase(led, rows=int(args.rate * args.seconds), rate=args.rate, start=0)
        out["intents"] = await intent_phase(led, args.intent_calls, 32)
        written = led.next_seq
        rest = max(0, args.verify_rows - written)
        out["unpaced"] = await append_phase(led, rows=rest, rate=None, start=written)
        t0 = time.perf_counter()
        await led.close()
        out["close_seconds"] = time.perf_counter() - t0
    q = max(1, len(rss.samples) // 4)
    quarters = [max(rss.samples[i : i + q], default=0) for i in range(0, len(rss.samples), q)][:4]
    out["rss_mb"] = {
        "min": min(rss.samples, default=0),
        "max": max(rss.samples, default=0),
        "max_per_quarter": quarters,
        "samples": len(rss.samples),
    }
    return out


def _uniform_ints(n: int, k: int) -> pa.Array:
    return pc.cast(pc.floor(pc.multiply(pc.random(n), k)), pa.int64())


def query_dataset(root: Path, rows: int, per_file: int = 50_000) -> None:
    """``rows`` commit rows as Parquet in the ledger layout over 30 days, vectorised with pyarrow, in files of
    ``per_file`` rows: the ledger seals ``seal_max_rows`` (50,000) rows per file, so 10M rows are 200 files."""
    rng = random.Random(7)
    listed: list[str] = []
    costs = pa.array([Decimal(rng.randrange(1, 50_000_000)).scaleb(-9) for _ in range(4096)], pa.decimal128(18, 9))
    projects = pa.array(PROJECTS)
    day0 = datetime(2026, 11, 1, tzinfo=UTC)
    seq = 0
    for f in range(0, rows, per_file):
        n = min(per_file, rows - f)
        day = day0 + timedelta(days=(f // per_file) % 30)
        base_us = int(day.timestamp() * 1_000_000)
        ts = pc.cast(pc.add(_uniform_ints(n, 86_400_000_000), base_us), pa.timestamp("us", tz="UTC"))
        seqs = pa.array(range(seq, seq + n), pa.int64())
        cols: dict[str, pa.Array] = {
            "seq": seqs,
            "origin": pa.array(["visionality.ledger/q/commits"]).take(pa.nulls(n, pa.int64()).fill_null(0)),
            "recorded_at": ts,
            "commit_id": pc.cast(seqs, pa.string()),
            "ts": ts,
            "appliance_id": pa.array(["q"]).take(pa.nulls(n, pa.int64()).fill_null(0)),
            "decision": pa.array(["allowed"]).take(pa.nulls(n, pa.int64()).fill_null(0)),
            "http_status": pa.nulls(n, pa.int32()).fill_null(200),
            "project": projects.take(_uniform_ints(n, len(PROJECTS))),
            "stream": pa.nulls(n, pa.bool_()).fill_null(False),
            "input_tokens": pa.nulls(n, pa.int64()).fill_null(1000),
            "output_tokens": pa.nulls(n, pa.int64()).fill_null(200),
            "cached_tokens": pa.nulls(n, pa.int64()).fill_null(0),
            "reasoning_tokens": pa.nulls(n, pa.int64()).fill_null(0),
            "cost_usd": costs.take(_uniform_ints(n, len(costs))),
            "reserved_usd": costs.take(_uniform_ints(n, len(costs))),
            "pii_entities": pa.array(["{}"]).take(pa.nulls(n, pa.int64()).fill_null(0)),
            "row_hash": pa.array(["0" * 64]).take(pa.nulls(n, pa.int64()).fill_null(0)),
        }
        arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in COMMIT_SCHEMA]
        table = pa.Table.from_arrays(arrays, schema=COMMIT_SCHEMA)
        part = root / "commits" / f"date={day:%Y-%m-%d}"
        part.mkdir(parents=True, exist_ok=True)
        name = f"q-{seq:012d}-{seq + n - 1:012d}.parquet"
        pq.write_table(table, part / name, compression="zstd", row_group_size=128 * 1024)
        listed.append(json.dumps({"file": f"commits/date={day:%Y-%m-%d}/{name}", "first_seq": seq}))
        seq += n
    # The views read only files a stream's manifest lists (views.py): list these (unsigned, as the query
    # does not check signatures -- verify does, and is measured on the real ledger above).
    manifest = StreamPaths(root, "commits", "q").manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(listed) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20_000, help="paced append rate, rows/s")
    p.add_argument("--seconds", type=float, default=10, help="paced phase length")
    p.add_argument("--intent-calls", type=int, default=3_200, help="intent+final pairs, 32 concurrent")
    p.add_argument("--verify-rows", type=int, default=1_000_000, help="rows written in all, then verified")
    p.add_argument("--query-rows", type=int, default=10_000_000, help="rows for the DuckDB aggregate")
    p.add_argument("--quick", action="store_true", help="tiny counts: checks the bench runs")
    p.add_argument("--keep", action="store_true", help="keep the temporary ledgers")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.add_argument(
        "--switch-interval",
        type=float,
        default=0.0005,
        help="sys.setswitchinterval for the run; default 0.0005, what `visionality up` sets (Python's own is 0.005)",
    )
    args = p.parse_args()
    tune_allocators()  # what `visionality up` does first: the figures are the appliance's, not pyarrow's defaults
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.quick:
        args.seconds, args.rate, args.intent_calls, args.verify_rows, args.query_rows = 1, 2000, 320, 5000, 50_000
    work = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    results: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        root = work / "ledger"
        results["write"] = asyncio.run(write_ledger(root, args))
        t0 = time.perf_counter()
        report = verify(root, public_keys={"*": KEY.verify_key})
        results["verify"] = {"rows": report.rows, "seconds": time.perf_counter() - t0}

        qroot = work / "query"
        t0 = time.perf_counter()
        query_dataset(qroot, args.query_rows)
        gen = time.perf_counter() - t0
        sql = (
            "SELECT project, date, sum(cost_usd) AS spent, count(*) AS calls "
            "FROM commits GROUP BY project, date ORDER BY date, project"
        )
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            cols, rows = run_query(open_views(qroot), sql)
            timings.append(time.perf_counter() - t0)
        results["query"] = {
            "rows": args.query_rows,
            "groups": len(rows),
            "generate_seconds": gen,
            "seconds_first": timings[0],
            "seconds_best": min(timings),
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    w = results["write"]
    assert isinstance(w, dict)
    paced, unpaced, intents = w["paced"], w["unpaced"], w["intents"]
    nf = w["noise_floor"]
    print(
        f"machine: {results['cpus']} CPUs, load average {os.getloadavg()[0]:.1f}, GIL switch interval "
        f"{sys.getswitchinterval() * 1000:g} ms; noise floor (append's CPU work "
        f"alone, no I/O or threads): p50 {nf['p50_us']:.0f} us, p99 {nf['p99_us']:.0f} us"
    )
    print(
        f"append paced at {args.rate:,.0f}/s: {paced['rows']:,} rows in {paced['seconds']:.1f}s = "
        f"{paced['rows_per_s']:,.0f} rows/s; append() p50 {paced['append_p50_us']:.0f} us, "
        f"p99 {paced['append_p99_us']:.0f} us, p99.9 {paced['append_p999_us']:.0f} us, "
        f"max {paced['append_max_us'] / 1000:.1f} ms"
    )
    print(
        f"CPU per row (unpaced): event-loop thread {unpaced['main_cpu_us_per_row']:.0f} us (append "
        f"{unpaced['append_mean_us']:.0f} us + building the record), whole process "
        f"{unpaced['process_cpu_us_per_row']:.0f} us (+ committer, sealer) -> about "
        f"{1e6 / max(unpaced['main_cpu_us_per_row'], unpaced['process_cpu_us_per_row'] / 2):,.0f} rows/s "
        "if both cores were ours"
    )
    if unpaced["rows"]:
        print(
            f"append unpaced: {unpaced['rows']:,} rows in {unpaced['seconds']:.1f}s = "
            f"{unpaced['rows_per_s']:,.0f} rows/s; p99 {unpaced['append_p99_us']:.0f} us"
        )
    print(
        f"intent+final, 32 concurrent: {intents['calls_per_s']:,.0f} calls/s; append_intent (fsync) "
        f"p50 {intents['intent_p50_us'] / 1000:.2f} ms, p99 {intents['intent_p99_us'] / 1000:.2f} ms"
    )
    print(
        f"RSS while sealing: {w['rss_mb']['min']:.0f}..{w['rss_mb']['max']:.0f} MB; peak per quarter of the run: "
        + ", ".join(f"{m:.0f}" for m in w["rss_mb"]["max_per_quarter"])
        + f" MB ({w['rss_mb']['samples']} samples); close (final seal) {w['close_seconds']:.2f}s"
    )
    v = results["verify"]
    print(f"verify: {v['rows']:,} rows in {v['seconds']:.1f}s")
    q = results["query"]
    print(
        f"duckdb spend by project by day over {q['rows']:,} rows: first {q['seconds_first']:.2f}s, "
        f"best {q['seconds_best']:.2f}s ({q['groups']} groups; data generated in {q['generate_seconds']:.0f}s)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
