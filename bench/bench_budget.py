"""Budget counters: what a reservation costs per call.

Per call: ``reserve`` (key cap + project cap, two buckets) then ``settle``: the counter work the
wire path adds to every allowed call. Also the refused path (``reserve`` raising BudgetExceeded:
what a 402 costs in the counters). Sequential ("single") and with 32 calls in flight on one event
loop ("c=32", each call's own latency; throughput over the run).

    .venv/bin/python bench/bench_budget.py [--calls 3000] [--redis redis://127.0.0.1:6379/0]

Redis keys go under a fresh prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

from visionality.budget import Cap, Counters, MemoryCounters
from visionality.budget_redis import RedisCounters
from visionality.errors import BudgetExceeded

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ROOMY = [Cap("key", "bench-key", Decimal("1000000"), "total"), Cap("project", "BENCH", Decimal("1000000"), "month")]
EXHAUSTED = [Cap("key", "bench-broke", Decimal("0"), "total")]
WORST, ACTUAL = Decimal("0.0123"), Decimal("0.0042")


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _allowed(counters: Counters, rid: str) -> float:
    t = time.perf_counter_ns()
    r = await counters.reserve(rid, ROOMY, WORST, AT)
    await counters.settle(r, ACTUAL)
    return (time.perf_counter_ns() - t) / 1000


async def _refused(counters: Counters, rid: str) -> float:
    t = time.perf_counter_ns()
    try:
        await counters.reserve(rid, EXHAUSTED, WORST, AT)
    except BudgetExceeded:
        pass
    else:
        raise AssertionError("a zero cap admitted a call")
    return (time.perf_counter_ns() - t) / 1000


async def _ping(counters: Counters, rid: str) -> float:
    """Baseline: one bare redis-py round trip, to tell client and machine cost from the scripts'."""
    assert isinstance(counters, RedisCounters)
    t = time.perf_counter_ns()
    await counters._redis.ping()
    return (time.perf_counter_ns() - t) / 1000


async def _measure(
    call: Callable[[Counters, str], Awaitable[float]], counters: Counters, calls: int, concurrency: int
) -> tuple[list[float], float]:
    tag = secrets.token_hex(4)
    for i in range(min(200, calls)):  # warm up: connections, scripts, caches
        await call(counters, f"warm-{tag}-{i}")
    samples: list[float] = []

    async def worker(w: int) -> None:
        for i in range(w, calls, concurrency):
            samples.append(await call(counters, f"{tag}-{i}"))

    t = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return samples, calls / (time.perf_counter() - t)


async def _bench(name: str, counters: Counters, calls: int) -> list[str]:
    rows = []
    cases = [("reserve+settle", _allowed), ("refused (402)", _refused)]
    if isinstance(counters, RedisCounters):
        cases.append(("PING baseline", _ping))
    for label, call in cases:
        for concurrency in (1, 32):
            samples, rate = await _measure(call, counters, calls, concurrency)
            rows.append(
                f"{name:<8} {label:<15} {'single' if concurrency == 1 else 'c=32':<7} "
                f"p50 {statistics.median(samples):8.1f} us   p99 {_pct(samples, 99):8.1f} us   {rate:9.0f} calls/s"
            )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    rows = await _bench("memory", MemoryCounters(), args.calls)
    prefix = f"vbench-{secrets.token_hex(6)}"
    redis_counters = RedisCounters(args.redis, prefix=prefix)
    try:
        await redis_counters.rebuild({}, {})
        rows += await _bench("redis", redis_counters, args.calls)
    finally:
        client = redis_counters._redis
        keys = [k async for k in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        await redis_counters.close()
    print(f"budget counters, {args.calls} calls per row, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
