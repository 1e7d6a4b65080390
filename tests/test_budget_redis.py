"""Budget counters in Redis: the shared scenarios, several processes, seeding, failing closed.

Needs the Redis at 127.0.0.1:6379 (skipped when absent). Every test uses its own key prefix and
deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import redis
from visionality import budget_redis
from visionality.budget import Cap, Reservation, counters_from_setting
from visionality.budget_redis import RedisCounters
from visionality.errors import BudgetExceeded, BudgetUnavailable, ConfigError

from tests.test_budget import (
    SCENARIOS,
    T0,
    Clock,
    Scenario,
    check_charge_and_burn,
    check_concurrent_200,
    check_month_rollover,
    check_overrun_recorded,
    run,
)

URL = "redis://127.0.0.1:6379/0"
D = Decimal
# Generous for the concurrency tests on a shared 2-core machine; the production default is 0.25 s.
SLOW_OK_S = 10.0


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"vtest-budget-{secrets.token_hex(6)}"
    yield p
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(match=f"{{{p}}}:*", count=1000))
    if keys:
        client.delete(*keys)
    assert not list(client.scan_iter(match=f"{{{p}}}:*"))
    client.close()


def with_counters[T](prefix: str, body: Callable[[RedisCounters], Awaitable[T]], *, seed: bool = True, **kw: Any) -> T:
    async def main() -> T:
        counters = RedisCounters(URL, prefix=prefix, **{"timeout_s": SLOW_OK_S, **kw})
        try:
            if seed:
                await counters.rebuild({}, {})
            return await body(counters)
        finally:
            await counters.close()

    return asyncio.run(main())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_redis_scenarios(prefix: str, scenario: Scenario) -> None:
    with_counters(prefix, lambda c: scenario(c, "k1"))


def test_redis_month_rollover(prefix: str) -> None:
    clock = Clock(T0)
    with_counters(prefix, lambda c: check_month_rollover(c, clock, "k1"), clock=clock)


def test_redis_charge_and_burn(prefix: str) -> None:
    clock = Clock(T0)
    with_counters(prefix, lambda c: check_charge_and_burn(c, clock, "k1"), clock=clock)


def test_redis_overrun_recorded(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    with_counters(prefix, lambda c: check_overrun_recorded(c, "k1", caplog))


# -- two processes, one key --------------------------------------------------------------------------


def _hammer(prefix: str, barrier: Any, tag: str, out: Any, interleave: bool) -> None:
    """One appliance process: its own client and event loop, 200 concurrent calls at the same key.

    ``interleave=False``: all reserve, then (after both processes reserved) all settle, so the number
    of allowed calls is exact. ``interleave=True``: each call settles as soon as it is allowed, like
    live traffic, so settled calls free room for later ones while the other process reserves."""

    async def call(counters: RedisCounters, cap: Cap, rid: str) -> Reservation | BudgetExceeded:
        try:
            r = await counters.reserve(rid, [cap], D("0.0007"), T0)
        except BudgetExceeded as e:
            return e
        if interleave:
            await asyncio.sleep(0.001)  # "the upstream call"
            await counters.settle(r, D("0.0004"))
        return r

    async def main() -> tuple[int, list[str]]:
        counters = RedisCounters(URL, prefix=prefix, timeout_s=SLOW_OK_S)
        cap = Cap("key", "shared", D("0.05"), "total")
        try:
            await counters.status([cap], T0)  # warm the connection before the start line
            barrier.wait(60)  # both processes start at once
            results = await asyncio.gather(*(call(counters, cap, f"{tag}-{i}") for i in range(200)))
            allowed = [r for r in results if isinstance(r, Reservation)]
            remaining = [r.remaining for r in results if isinstance(r, BudgetExceeded)]
            barrier.wait(60)
            await asyncio.gather(*(counters.settle(r, D("0.0004")) for r in allowed))  # no-op if settled
            return len(allowed), remaining
        finally:
            await counters.close()

    out.put((tag, *asyncio.run(main())))


def _two_processes(prefix: str, interleave: bool) -> list[tuple[str, int, list[str]]]:
    with_counters(prefix, lambda c: asyncio.sleep(0))  # seed once, as the first node to start would
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_hammer, args=(prefix, barrier, tag, out, interleave)) for tag in ("A", "B")]
    for p in procs:
        p.start()
    got: list[tuple[str, int, list[str]]] = []
    deadline = time.monotonic() + 120
    while len(got) < len(procs):
        try:
            got.append(out.get(timeout=1))
        except queue.Empty:
            assert all(p.exitcode in (None, 0) for p in procs), [p.exitcode for p in procs]
            assert time.monotonic() < deadline, "workers did not report"
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    print("allowed per process:", {tag: n for tag, n, _ in got})
    return got


def _final(prefix: str) -> tuple[Decimal, Decimal]:
    async def check(counters: RedisCounters) -> tuple[Decimal, Decimal]:
        [st] = await counters.status([Cap("key", "shared", D("0.05"), "total")], T0)
        return st.spent, st.reserved

    return with_counters(prefix, check, seed=False)


def test_redis_two_processes_share_one_cap(prefix: str) -> None:
    got = _two_processes(prefix, interleave=False)
    allowed = sum(n for _, n, _ in got)
    refusals = [r for _, _, rs in got for r in rs]
    assert allowed == 71  # 71 x $0.0007 = $0.0497 <= $0.05 across both processes
    assert len(refusals) == 400 - 71 and set(refusals) == {"0.0003"}
    assert _final(prefix) == (71 * D("0.0004"), 0)


def test_redis_two_processes_live_traffic(prefix: str) -> None:
    """Settling as calls finish frees room for more calls, but settled spend never passes the cap."""
    got = _two_processes(prefix, interleave=True)
    allowed = sum(n for _, n, _ in got)
    spent, reserved = _final(prefix)
    assert (spent, reserved) == (allowed * D("0.0004"), 0)
    assert 71 <= allowed and spent <= D("0.05")
    assert all(D(r) < D("0.0007") for _, _, rs in got for r in rs)


# -- failing closed --------------------------------------------------------------------------------


def test_redis_unreachable_is_unavailable_within_timeout() -> None:
    cap = Cap("key", "k", D("1"), "total")

    async def main() -> None:
        counters = RedisCounters("redis://127.0.0.1:1/0", timeout_s=0.25)
        try:
            for call in (
                lambda: counters.reserve("a", [cap], D("0.1"), T0),
                lambda: counters.status([cap], T0),
                lambda: counters.charge([cap], D("0.1"), T0),
                lambda: counters.rebuild({}, {}),
            ):
                t = time.monotonic()
                with pytest.raises(BudgetUnavailable, match="unavailable"):
                    await call()
                assert time.monotonic() - t < 0.5
            fake = Reservation("z", D("0.1"), ("key:k:total",), (cap,), T0)
            with pytest.raises(BudgetUnavailable):
                await counters.settle(fake, D("0.1"))
        finally:
            await counters.close()

    run(main())


def test_redis_blackhole_times_out(prefix: str) -> None:
    """A Redis that accepts but never answers (here: a silent local socket) times out at timeout_s."""

    async def main() -> None:
        # Keep every accepted connection referenced: a dropped StreamWriter is garbage-collected and closes the
        # socket, which fails fast instead of hanging (the test was flaky on exactly that).
        held: list[asyncio.StreamWriter] = []
        server = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        counters = RedisCounters(f"redis://127.0.0.1:{port}/0", timeout_s=0.25)
        try:
            t = time.monotonic()
            with pytest.raises(BudgetUnavailable):
                await counters.reserve("a", [Cap("key", "k", D("1"), "total")], D("0.1"), T0)
            assert 0.2 < time.monotonic() - t < 1.0  # 0.25 s plus scheduling on a loaded machine
            assert len(counters._cancels) == 1  # the reserve may have run: a cancel is under way
        finally:
            await counters.close()
            server.close()

    run(main())


def test_redis_unseeded_refuses(prefix: str) -> None:
    """Redis that lost its data (no generation key) must not grant every cap again from zero."""
    cap = Cap("key", "k", D("1"), "total")

    async def body(counters: RedisCounters) -> None:
        with pytest.raises(BudgetUnavailable, match="not seeded"):
            await counters.reserve("a", [cap], D("0.1"), T0)
        with pytest.raises(BudgetUnavailable, match="not seeded"):
            await counters.status([cap], T0)

    with_counters(prefix, body, seed=False)


def test_redis_rebuild_seeds_once(prefix: str) -> None:
    """Several nodes start: the first seeds from the ledger, the rest change nothing (no double count)."""
    key = Cap("key", "k", D("1"), "total")
    proj = Cap("project", "P", D("1"), "month")
    spent = {"key:k:total": D("0.4"), "project:P:2026-12": D("0.1")}
    reserved = {"key:k:total": D("0.1")}

    async def body(a: RedisCounters) -> None:
        await a.rebuild(spent, reserved)
        assert a.generation is not None
        b = RedisCounters(URL, prefix=prefix, timeout_s=SLOW_OK_S)
        try:
            await b.rebuild(spent, reserved)  # a second node with the same ledger view
            assert b.generation is None
            k, p = await b.status([key, proj], T0)
            assert (k.spent, k.reserved, p.spent, p.reserved) == (D("0.4"), D("0.1"), D("0.1"), 0)
            with pytest.raises(BudgetExceeded) as ei:
                await b.reserve("x", [key, proj], D("0.6"), T0)
            assert (ei.value.scope, ei.value.remaining) == ("key", "0.5")
        finally:
            await b.close()

    with_counters(prefix, body, seed=False)


def test_redis_reservation_record_makes_retried_settle_exact(prefix: str) -> None:
    """settle releases what the record says was held, not what the caller's object says."""
    cap = Cap("key", "k", D("1"), "total")

    async def body(c: RedisCounters) -> None:
        r = await c.reserve("a", [cap], D("0.3"), T0)
        forged = Reservation(r.reservation_id, D("0.9"), r.buckets, r.caps, r.at)
        await c.settle(forged, D("0.1"))
        await c.settle(r, D("0.1"))
        [st] = await c.status([cap], T0)
        assert (st.spent, st.reserved) == (D("0.1"), 0)

    with_counters(prefix, body)


def test_redis_timed_out_reserve_is_cancelled(prefix: str) -> None:
    """A reserve whose reply is lost may still have run: the background cancel releases it, and a
    late duplicate of it is refused rather than held."""
    cap = Cap("key", "k", D("1"), "total")

    async def body(c: RedisCounters) -> None:
        r = await c.reserve("lost", [cap], D("0.4"), T0)  # it ran; pretend its reply was lost
        c._spawn_cancel(r.reservation_id, r.buckets)
        await asyncio.wait_for(asyncio.gather(*c._cancels), timeout=SLOW_OK_S)
        [st] = await c.status([cap], T0)
        assert (st.spent, st.reserved) == (0, 0)
        c._spawn_cancel("never-ran", r.buckets)  # the other case: the reserve never reached Redis
        await asyncio.wait_for(asyncio.gather(*c._cancels), timeout=SLOW_OK_S)
        with pytest.raises(BudgetUnavailable, match="already used"):
            await c.reserve("never-ran", [cap], D("0.4"), T0)
        [st] = await c.status([cap], T0)
        assert (st.spent, st.reserved) == (0, 0)

    with_counters(prefix, body)


def test_redis_timed_out_settle_is_retried_in_the_background(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A settle whose reply times out must not leave the worst case reserved for good: it is retried (settle is
    idempotent per id, so a settle that did run is not charged twice)."""
    cap = Cap("key", "k", D("1"), "total")

    async def body(c: RedisCounters) -> None:
        r = await c.reserve("slow-settle", [cap], D("0.4"), T0)
        real = c._settle_once
        calls = 0

        async def first_times_out(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise BudgetUnavailable("redis: timed out")
            return await real(*args)

        monkeypatch.setattr(c, "_settle_once", first_times_out)
        with pytest.raises(BudgetUnavailable):
            await c.settle(r, D("0.1"))
        await asyncio.wait_for(asyncio.gather(*c._cancels), timeout=SLOW_OK_S)
        [st] = await c.status([cap], T0)
        assert (st.spent, st.reserved) == (D("0.1"), 0)
        await c.settle(r, D("0.1"))  # a late duplicate of the original settle: no second charge
        [st] = await c.status([cap], T0)
        assert (st.spent, st.reserved) == (D("0.1"), 0)

    with_counters(prefix, body)


def test_redis_large_amounts_stay_exact(prefix: str) -> None:
    """Near the 2**53 nano-USD limit the Lua comparison is still exact to the nano-dollar."""
    cap = Cap("project", "big", D("9000000.000000001"), "total")

    async def body(c: RedisCounters) -> None:
        await c.reserve("a", [cap], D("8999999.999999999"), T0)
        with pytest.raises(BudgetExceeded) as ei:
            await c.reserve("b", [cap], D("0.000000003"), T0)
        assert ei.value.remaining == "0.000000002"
        await c.reserve("c", [cap], D("0.000000002"), T0)
        [st] = await c.status([cap], T0)
        assert (st.reserved, st.remaining) == (cap.amount, 0)

    with_counters(prefix, body)


def test_counters_from_setting_redis(prefix: str) -> None:
    async def main() -> None:
        counters = counters_from_setting(URL, prefix=prefix)
        assert isinstance(counters, RedisCounters)
        await counters.close()

    run(main())


@pytest.mark.parametrize(("url", "prefix"), [("redis://127.0.0.1:notaport/0", "v"), (URL, "a}b"), (URL, "")])
def test_bad_settings_are_config_errors(url: str, prefix: str) -> None:
    with pytest.raises(ConfigError):
        RedisCounters(url, prefix=prefix)


def test_settle_time_is_node_clock(prefix: str) -> None:
    """Burn slots come from the settling node's clock; a settle never touches another month."""
    clock = Clock(datetime(2027, 1, 1, 0, 5, tzinfo=UTC))
    cap = Cap("key", "k", D("1"), "month")

    async def body(c: RedisCounters) -> None:
        r = await c.reserve("a", [cap], D("0.5"), datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
        await c.settle(r, D("0.5"))
        [jan] = await c.status([cap], clock.now)
        assert (jan.spent, jan.burn_rate_per_hour) == (0, 0)

    with_counters(prefix, body, clock=clock)


def test_redis_burst_fits_default_timeout(prefix: str) -> None:
    """200 concurrent calls at the production timeout (0.25 s): pipelined into one round trip, none
    fails closed for want of time (one command at a time took ~0.4 s here)."""
    with_counters(prefix, lambda c: check_concurrent_200(c, "k1"), timeout_s=0.25)


def test_redis_reloads_flushed_scripts(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis restart empties the script cache: NOSCRIPT replies are reloaded and resent once.
    (Simulated with a script Redis has never seen; SCRIPT FLUSH would hit others sharing Redis.)"""
    monkeypatch.setattr(budget_redis, "_RESERVE", budget_redis._RESERVE + f"-- {secrets.token_hex(8)}\n")
    cap = Cap("key", "k", D("1"), "total")

    async def body(c: RedisCounters) -> None:
        c._batcher._loaded = True  # pretend the scripts were loaded before the "restart"
        await c.reserve("a", [cap], D("0.5"), T0)
        [st] = await c.status([cap], T0)
        assert st.reserved == D("0.5")

    with_counters(prefix, body)
