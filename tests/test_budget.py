"""Budget counters: the in-process backend and the rules both backends share.

The ``check_*`` scenarios take any Counters and are run again against Redis by
tests/test_budget_redis.py, so both backends are held to the same behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from visionality.budget import (
    MAX_NANOS,
    Cap,
    Counters,
    DuplicateReservation,
    MemoryCounters,
    Reservation,
    bucket_for,
    counters_from_setting,
    from_nanos,
    period_start,
    to_nanos,
)
from visionality.errors import BudgetExceeded, ConfigError

D = Decimal
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    """A settable wall clock for settle-time behaviour (rollover, burn rate)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run[T](coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


# -- scenarios shared with the Redis backend ------------------------------------------------------


async def check_concurrent_200(counters: Counters, ident: str) -> None:
    """Issue 4 proof: $0.05 key cap, 200 concurrent calls each with a $0.0007 worst case (fits alone,
    $0.14 together). Exactly 71 fit (71 x 0.0007 = 0.0497); every refusal names $0.0003 remaining."""
    cap = Cap("key", ident, D("0.05"), "total")
    worst, actual = D("0.0007"), D("0.0004")
    results = await asyncio.gather(
        *(counters.reserve(f"{ident}-{i}", [cap], worst, T0) for i in range(200)), return_exceptions=True
    )
    allowed = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(allowed) + len(refused) == 200, [r for r in results if not isinstance(r, Reservation | BudgetExceeded)]
    assert len(allowed) == 71
    assert sum((r.amount for r in allowed), D(0)) <= cap.amount
    for e in refused:
        assert (e.scope, e.cap, e.remaining, e.period) == ("key", "0.05", "0.0003", "total")
    # the "upstream calls": each allowed reservation is settled to a realistic actual below its worst case
    await asyncio.gather(*(counters.settle(r, actual) for r in allowed))
    [st] = await counters.status([cap], T0)
    assert st.spent == 71 * actual <= cap.amount
    assert st.reserved == 0
    assert st.remaining == cap.amount - 71 * actual


async def check_key_and_project(counters: Counters, ident: str) -> None:
    """Both caps apply; the tighter binds, and a refusal reserves nothing in either bucket."""
    key = Cap("key", ident, D("1.00"), "total")
    project = Cap("project", ident + "-P", D("0.30"), "month")
    r = await counters.reserve(ident + "-a", [key, project], D("0.25"), T0)
    assert r.buckets == (f"key:{ident}:total", f"project:{ident}-P:2026-12")
    assert r.remaining == D("0.05")  # the tighter cap's remaining once this hold is in
    with pytest.raises(BudgetExceeded) as ei:
        await counters.reserve(ident + "-b", [key, project], D("0.10"), T0)
    assert (ei.value.scope, ei.value.cap, ei.value.remaining, ei.value.period) == ("project", "0.3", "0.05", "month")
    key_st, proj_st = await counters.status([key, project], T0)
    assert key_st.reserved == proj_st.reserved == D("0.25")  # the refused 0.10 is held nowhere
    # the key alone still has room: another project under the same key is not blocked
    other = Cap("project", ident + "-Q", D("5"), "month")
    await counters.reserve(ident + "-c", [key, other], D("0.10"), T0)
    # and when the key is the tighter one, the key binds
    with pytest.raises(BudgetExceeded) as ei:
        await counters.reserve(ident + "-d", [key, other], D("0.70"), T0)
    assert (ei.value.scope, ei.value.remaining) == ("key", "0.65")


async def check_zero_cap(counters: Counters, ident: str) -> None:
    """Rule: a call fits when spent + reserved + amount <= cap. A zero cap refuses any positive worst
    case, even one nano-dollar, and admits a call whose worst case is exactly $0."""
    cap = Cap("key", ident, D(0), "month")
    for amount in (D("0.000000001"), D("0.01")):
        with pytest.raises(BudgetExceeded) as ei:
            await counters.reserve(f"{ident}-{amount}", [cap], amount, T0)
        assert (ei.value.remaining, ei.value.cap) == ("0", "0")
    r = await counters.reserve(ident + "-free", [cap], D(0), T0)
    await counters.settle(r, D(0))
    [st] = await counters.status([cap], T0)
    assert (st.spent, st.reserved, st.remaining) == (0, 0, 0)


async def check_cap_smaller_than_one_call(counters: Counters, ident: str) -> None:
    cap = Cap("key", ident, D("0.001"), "total")
    with pytest.raises(BudgetExceeded) as ei:
        await counters.reserve(ident + "-a", [cap], D("0.0010001"), T0)
    assert ei.value.remaining == "0.001"
    # an absurd worst case (above what a double can count exactly) is refused too, not overflowed
    with pytest.raises(BudgetExceeded):
        await counters.reserve(ident + "-b", [cap], D(10**12), T0)
    [st] = await counters.status([cap], T0)
    assert (st.spent, st.reserved) == (0, 0)


async def check_settle_idempotent(counters: Counters, ident: str) -> None:
    cap = Cap("key", ident, D("1"), "total")
    r = await counters.reserve(ident + "-a", [cap], D("0.5"), T0)
    await counters.settle(r, D("0.2"))
    await counters.settle(r, D("0.2"))  # a retry after a timeout
    await counters.settle(r, D("0.3"))  # even with another figure: the first settle stands
    [st] = await counters.status([cap], T0)
    assert (st.spent, st.reserved, st.remaining) == (D("0.2"), 0, D("0.8"))
    with pytest.raises(DuplicateReservation):  # a reused id would let one settle free two holds
        await counters.reserve(ident + "-a", [cap], D("0.1"), T0)


async def check_overrun_recorded(counters: Counters, ident: str, caplog: pytest.LogCaptureFixture) -> None:
    """actual > reserved is recorded as is (the ledger must match the bill) and logged."""
    cap = Cap("key", ident, D("1"), "total")
    r = await counters.reserve(ident + "-a", [cap], D("0.1"), T0)
    with caplog.at_level(logging.WARNING, logger="visionality"):
        await counters.settle(r, D("0.15"))
    assert "not a bound" in caplog.text
    [st] = await counters.status([cap], T0)
    assert (st.spent, st.reserved) == (D("0.15"), 0)


async def check_month_rollover(counters: Counters, clock: Clock, ident: str) -> None:
    """A month cap resets on the 1st, a total cap does not; a settle after midnight charges the month
    the reservation was made in (no leak into, or out of, the new month)."""
    month = Cap("key", ident, D("1"), "month")
    total = Cap("project", ident + "-P", D("1.5"), "total")
    before = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    after = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC)
    r = await counters.reserve(ident + "-a", [month, total], D("0.9"), before)
    with pytest.raises(BudgetExceeded):
        await counters.reserve(ident + "-b", [month, total], D("0.2"), before)
    clock.now = after
    await counters.settle(r, D("0.6"))
    dec, _ = await counters.status([month, total], before)
    assert (dec.bucket, dec.spent, dec.reserved) == (f"key:{ident}:2026-12", D("0.6"), 0)
    jan, tot = await counters.status([month, total], after)
    assert (jan.bucket, jan.spent, jan.remaining) == (f"key:{ident}:2027-01", 0, D("1"))
    assert (tot.spent, tot.remaining) == (D("0.6"), D("0.9"))
    # the new month admits what December refused; the total cap keeps counting and now binds
    await counters.reserve(ident + "-c", [month, total], D("0.5"), after)
    with pytest.raises(BudgetExceeded) as ei:
        await counters.reserve(ident + "-d", [month, total], D("0.45"), after)
    assert (ei.value.scope, ei.value.remaining) == ("project", "0.4")


async def check_charge_and_burn(counters: Counters, clock: Clock, ident: str) -> None:
    """Burn rate counts settled spend only, over the last hour or since the period start."""
    total = Cap("key", ident, D("10"), "total")
    month = Cap("project", ident + "-P", D("10"), "month")
    clock.now = T0 - timedelta(minutes=90)
    r = await counters.reserve(ident + "-old", [total], D("1"), clock.now)
    await counters.settle(r, D("1"))  # outside the hour: not in the rate
    clock.now = T0 - timedelta(minutes=30)
    r = await counters.reserve(ident + "-a", [total], D("1"), clock.now)
    await counters.settle(r, D("0.5"))
    await counters.reserve(ident + "-held", [total], D("3"), clock.now)  # reserved, not burned
    await counters.charge([total], D("0.25"), T0 - timedelta(minutes=5))
    [st] = await counters.status([total], T0)
    assert (st.spent, st.reserved) == (D("1.75"), D("3"))
    assert st.burn_since == T0 - timedelta(minutes=59)
    assert st.burn_rate_per_hour == (D("0.75") * 60 / 59).quantize(D("1e-9"))
    # a month cap 15 minutes into the month: the window starts at the period start
    at = datetime(2027, 1, 1, 0, 15, tzinfo=UTC)
    clock.now = at - timedelta(minutes=10)
    r = await counters.reserve(ident + "-jan", [month], D("1"), clock.now)
    await counters.settle(r, D("0.5"))
    [st] = await counters.status([month], at)
    assert st.burn_since == datetime(2027, 1, 1, tzinfo=UTC)
    assert st.burn_rate_per_hour == D("2.000000000")


async def check_empty_caps(counters: Counters, ident: str) -> None:
    r = await counters.reserve(ident, [], D("123.45"), T0)
    assert (r.buckets, r.amount, r.remaining) == ((), D("123.45"), None)
    await counters.settle(r, D("100"))
    assert await counters.status([], T0) == []


Scenario = Callable[[Counters, str], Awaitable[None]]
SCENARIOS: list[Scenario] = [
    check_concurrent_200,
    check_key_and_project,
    check_zero_cap,
    check_cap_smaller_than_one_call,
    check_settle_idempotent,
    check_empty_caps,
]


# -- the in-process backend -----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_memory_scenarios(scenario: Scenario) -> None:
    run(scenario(MemoryCounters(), "k1"))


def test_memory_month_rollover() -> None:
    clock = Clock(T0)
    run(check_month_rollover(MemoryCounters(clock=clock), clock, "k1"))


def test_memory_charge_and_burn() -> None:
    clock = Clock(T0)
    run(check_charge_and_burn(MemoryCounters(clock=clock), clock, "k1"))


def test_memory_overrun_recorded(caplog: pytest.LogCaptureFixture) -> None:
    run(check_overrun_recorded(MemoryCounters(), "k1", caplog))


def test_memory_concurrent_refusals_name_exact_remaining() -> None:
    """In process the 200 reservations run in gather order, so every refusal's remaining is known
    exactly even with uneven worst cases."""
    cap = Cap("key", "k", D("0.05"), "total")
    amounts = [D(f"0.000{(i * 37) % 9 + 1}") for i in range(200)]

    async def main() -> None:
        counters = MemoryCounters()
        results = await asyncio.gather(
            *(counters.reserve(str(i), [cap], a, T0) for i, a in enumerate(amounts)), return_exceptions=True
        )
        held = D(0)
        for amount, result in zip(amounts, results, strict=True):
            if held + amount <= cap.amount:
                assert isinstance(result, Reservation)
                held += amount
            else:
                assert isinstance(result, BudgetExceeded)
                assert D(result.remaining) == cap.amount - held
        [st] = await counters.status([cap], T0)
        assert st.reserved == held <= cap.amount

    run(main())


def test_memory_rebuild_replaces_state() -> None:
    key = Cap("key", "k", D("1"), "total")
    proj = Cap("project", "P", D("1"), "month")

    async def main() -> None:
        counters = MemoryCounters()
        r = await counters.reserve("a", [key, proj], D("0.5"), T0)
        await counters.rebuild({"key:k:total": D("0.4")}, {"key:k:total": D("0.1"), "project:P:2026-12": D("0.2")})
        k, p = await counters.status([key, proj], T0)
        assert (k.spent, k.reserved, p.spent, p.reserved) == (D("0.4"), D("0.1"), 0, D("0.2"))
        # the pre-rebuild reservation is gone: settling it charges its buckets, releases nothing
        await counters.settle(r, D("0.3"))
        k, p = await counters.status([key, proj], T0)
        assert (k.spent, k.reserved, p.spent, p.reserved) == (D("0.7"), D("0.1"), D("0.3"), D("0.2"))
        with pytest.raises(BudgetExceeded) as ei:
            await counters.reserve("b", [key, proj], D("0.3"), T0)
        assert (ei.value.scope, ei.value.remaining) == ("key", "0.2")

    run(main())


def test_memory_settled_ids_expire() -> None:
    cap = Cap("key", "k", D("1"), "total")

    async def main() -> None:
        counters = MemoryCounters(settled_ttl_s=0.0)
        for i in range(3):
            await counters.settle(await counters.reserve(str(i), [cap], D("0.1"), T0), D("0.1"))
        await counters.settle(await counters.reserve("x", [cap], D("0.1"), T0), D("0.1"))
        assert list(counters._settled) == ["x"]  # older ids pruned: memory stays bounded

    run(main())


# -- caps, buckets, money -------------------------------------------------------------------------


def test_bucket_names() -> None:
    at = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert bucket_for(Cap("key", "abc", D(1), "total"), at) == "key:abc:total"
    assert bucket_for(Cap("project", "PROJ", D(1), "month"), at) == "project:PROJ:2026-12"
    # month in a configured zone: 23:30 UTC on Dec 31 is already January in Tokyo
    tokyo = ZoneInfo("Asia/Tokyo")
    assert bucket_for(Cap("project", "PROJ", D(1), "month"), at, month_tz=tokyo) == "project:PROJ:2027-01"
    assert period_start(Cap("key", "a", D(1), "month"), at, month_tz=tokyo) == datetime(2026, 12, 31, 15, tzinfo=UTC)
    assert period_start(Cap("key", "a", D(1), "total"), at) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        bucket_for(Cap("key", "a", D(1), "month"), datetime(2026, 12, 1))


def test_month_tz_rollover_follows_configured_zone() -> None:
    ny = ZoneInfo("America/New_York")
    cap = Cap("key", "k", D("1"), "month")

    async def main() -> None:
        counters = MemoryCounters(month_tz=ny)
        # 03:00 UTC on Jan 1 is still Dec 31 in New York: December's bucket
        r = await counters.reserve("a", [cap], D("0.9"), datetime(2027, 1, 1, 3, tzinfo=UTC))
        assert r.buckets == ("key:k:2026-12",)
        with pytest.raises(BudgetExceeded):
            await counters.reserve("b", [cap], D("0.2"), datetime(2027, 1, 1, 4, 59, tzinfo=UTC))
        await counters.reserve("c", [cap], D("0.2"), datetime(2027, 1, 1, 5, tzinfo=UTC))  # NY midnight

    run(main())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("user", "a", D(1), "total"), "scope"),
        (("key", "a", D(1), "week"), "period"),
        (("key", "", D(1), "total"), "non-empty"),
        (("key", "a", D(-1), "total"), ">= 0"),
        (("key", "a", D("NaN"), "total"), ">= 0"),
        (("key", "a", 1.0, "total"), ">= 0"),
        (("key", "a", D(10**8), "total"), "limit"),
    ],
)
def test_cap_rejects_nonsense(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Cap(*args)  # type: ignore[arg-type]


def test_nanos_are_exact_and_round_conservatively() -> None:
    assert to_nanos(D("0.05")) == 50_000_000
    assert from_nanos(50_000_000) == D("0.05")
    assert str(from_nanos(1)) == "1E-9"
    assert to_nanos(D("0.0000000001")) == 1  # sub-nano rounds up: a reservation stays an upper bound
    assert Cap("key", "a", D("0.0000000019"), "total").nanos == 1  # a cap rounds down
    assert to_nanos(from_nanos(MAX_NANOS)) == MAX_NANOS
    total = sum((from_nanos(to_nanos(D("0.1"))) for _ in range(10)), D(0))
    assert total == D(1)  # what floats get wrong
    with pytest.raises(TypeError, match="never float"):
        to_nanos(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        to_nanos(D("Infinity"))


def test_negative_amounts_are_refused() -> None:
    cap = Cap("key", "k", D("1"), "total")

    async def main() -> None:
        counters = MemoryCounters()
        with pytest.raises(ValueError, match="negative"):
            await counters.reserve("a", [cap], D("-0.1"), T0)
        r = await counters.reserve("b", [cap], D("0.1"), T0)
        with pytest.raises(ValueError, match="negative"):
            await counters.settle(r, D("-0.1"))

    run(main())


def test_counters_from_setting() -> None:
    assert isinstance(counters_from_setting("memory"), MemoryCounters)
    with pytest.raises(ConfigError, match="memory"):
        counters_from_setting("postgres://x")
