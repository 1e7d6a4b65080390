"""Hard budget caps: reserve the worst case before the call, settle to the actual after it.

The rule every backend enforces, atomically over all caps that apply to a call::

    for every cap:  spent + reserved + amount <= cap.amount     else refuse, reserving nothing anywhere

The peers overshoot because they check past spend only (Portkey 2.0), skip the reservation when
the cost is unknown (LiteLLM #35524), or read-add-set without atomicity (LiteLLM #35567, #40095,
PR #40002: five concurrent 300K-token calls against a $0.45 key spent $0.60). Here the check and
the increment are one indivisible step: synchronous code inside one coroutine for
:class:`MemoryCounters` (nothing can interleave on the event loop), one Lua script for
``RedisCounters`` (``budget_redis.py``).

Rules chosen:

* **Zero cap.** A call fits when ``spent + reserved + amount <= cap``, nothing more: a cap of zero
  refuses every call whose worst case is above $0 and admits a call whose worst case is exactly
  $0 (it spends nothing). A model without a price never reaches here with $0: the price lookup
  refuses it (``PricingError``), so a zero cap cannot be slipped past with an unpriced model.
* **Money.** Decimal at the interface; integer nano-USD inside, so counters add exactly. Amounts
  with sub-nano digits are rounded *up* (:func:`to_nanos`): a reservation stays a true upper bound
  and the counters can only over-count, by under one nano-dollar per call. Cap amounts round *down*.
  Every amount is limited to ``MAX_NANOS`` (2**53 - 1 nano-USD, about $9.0M) because Redis Lua
  numbers are IEEE doubles, exact only up to 2**53; the same limit applies in memory so both
  backends behave alike.
* **Remaining** is ``cap - spent - reserved`` clamped at zero (a recorded overrun shows in
  ``spent``, never as a negative remaining in a 402 body).
* **Burn rate** (:class:`CapStatus`): spend *settled* (reservations do not count) in one-minute
  slots covering the current minute and the 59 before it, divided by the time those slots span up to
  ``at``; when the period began later than that window (a month cap in its first hour) the window
  starts at the period start. The window used is returned as ``burn_since``. The span is at least
  one minute so a settle right after the period starts does not read as an infinite rate.
* **Settle after a month rollover** charges the buckets the reservation was made in
  (``Reservation.buckets``), never buckets recomputed from the settle time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, Literal, Protocol

from .errors import BudgetExceeded, BudgetUnavailable, ConfigError

__all__ = [
    "MAX_NANOS",
    "Period",
    "Scope",
    "Cap",
    "Reservation",
    "CapStatus",
    "Counters",
    "MemoryCounters",
    "DuplicateReservation",
    "bucket_for",
    "period_start",
    "counters_from_setting",
    "to_nanos",
    "from_nanos",
]

_log = logging.getLogger(__name__)

Period = Literal["total", "month"]
Scope = Literal["key", "project"]

# Redis Lua numbers are doubles: integers are exact only below 2**53. Keeping every cap, amount and
# counter under this bound keeps the Lua comparison (cap - spent) - reserved exact (budget_redis.py).
MAX_NANOS = 2**53 - 1
_NANOS_PER_USD = 9  # decimal places: matches the ledger's Parquet decimal128(18, 9)
_BURN_SLOTS = 60  # one-minute slots in the burn-rate window
_MIN_BURN_SPAN = timedelta(minutes=1)


def to_nanos(d: Decimal) -> int:
    """USD as a Decimal -> integer nano-USD, rounding any sub-nano remainder *up* (see module doc)."""
    if not isinstance(d, Decimal):
        raise TypeError(f"money must be a Decimal, got {type(d).__name__} (never float)")
    if not d.is_finite():
        raise ValueError(f"money must be finite, got {d}")
    return int(d.scaleb(_NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(n: int) -> Decimal:
    """Integer nano-USD -> Decimal USD with exactly nine places (``50000000`` -> ``0.050000000``)."""
    return Decimal(n).scaleb(-_NANOS_PER_USD)


def _usd(n: int) -> str:
    """A nano amount as a plain decimal string for messages and error bodies (``0.05``, never 5E-2)."""
    d = from_nanos(n).normalize()
    return format(d, "f")


def _amount_nanos(amount: Decimal, what: str) -> int:
    n = to_nanos(amount)
    if n < 0:
        raise ValueError(f"{what} must not be negative, got {amount}")
    return n


@dataclass(frozen=True, slots=True)
class Cap:
    """One limit: ``amount`` USD per ``period`` for a key (envelope ``jti``) or a project."""

    scope: Scope
    ident: str
    amount: Decimal
    period: Period

    def __post_init__(self) -> None:
        if self.scope not in ("key", "project"):
            raise ConfigError(f"cap scope must be 'key' or 'project', got {self.scope!r}")
        if self.period not in ("total", "month"):
            raise ConfigError(f"cap period must be 'total' or 'month', got {self.period!r}")
        if not isinstance(self.ident, str) or not self.ident:
            raise ConfigError(f"{self.scope} cap needs a non-empty id, got {self.ident!r}")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount < 0:
            raise ConfigError(f"{self.scope} cap for {self.ident!r} must be a Decimal >= 0, got {self.amount!r}")
        if self.nanos > MAX_NANOS:
            raise ConfigError(f"{self.scope} cap for {self.ident!r} exceeds the ${_usd(MAX_NANOS)} limit")

    @property
    def nanos(self) -> int:
        """The cap in nano-USD, rounded *down*: a cap never grants a fraction it was not given."""
        return int(self.amount.scaleb(_NANOS_PER_USD).to_integral_value(rounding=ROUND_FLOOR))


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"budget times must be timezone-aware, got naive {at.isoformat()}")
    return at


def bucket_for(cap: Cap, at: datetime, *, month_tz: tzinfo = UTC) -> str:
    """The counter a cap charges at ``at``: ``key:<id>:total`` or ``project:<id>:2026-12``.

    Month buckets follow the calendar month in ``month_tz`` (UTC unless configured). The suffix is
    either ``total`` or a fixed-width ``YYYY-MM``, so two different caps never share a bucket name.
    """
    if cap.period == "total":
        return f"{cap.scope}:{cap.ident}:total"
    local = _aware(at).astimezone(month_tz)
    return f"{cap.scope}:{cap.ident}:{local.year:04d}-{local.month:02d}"


def period_start(cap: Cap, at: datetime, *, month_tz: tzinfo = UTC) -> datetime | None:
    """Start of the cap's current period in UTC (first of the month in ``month_tz``), None for total."""
    if cap.period == "total":
        return None
    local = _aware(at).astimezone(month_tz)
    first = datetime(local.year, local.month, 1, tzinfo=month_tz)
    return first.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A held worst case. ``amount`` is what is actually held (rounded up to whole nano-USD)."""

    reservation_id: str
    amount: Decimal
    buckets: tuple[str, ...]
    caps: tuple[Cap, ...]
    at: datetime
    # The least remaining over the caps once this hold is in, for the x-visionality-budget-remaining
    # header without a second round trip to the counters. None when no cap applies.
    remaining: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CapStatus:
    """One cap's live position. ``burn_rate_per_hour`` is settled spend over the window since
    ``burn_since`` (at most the last hour, from the period start if that is later), per hour."""

    cap: Cap
    bucket: str
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    burn_rate_per_hour: Decimal
    burn_since: datetime


class DuplicateReservation(BudgetUnavailable):
    """A reservation id was reused. Refused like an unavailable backend (503, fail closed): holding
    two worst cases under one id would let a retry's settle release budget still in use."""


class Counters(Protocol):
    """Budget counters shared by the wire path, the CLI status command and the admin listener."""

    async def reserve(self, reservation_id: str, caps: Sequence[Cap], amount: Decimal, at: datetime) -> Reservation:
        """Hold ``amount`` against every cap, or raise BudgetExceeded naming the binding cap and
        hold nothing. BudgetUnavailable when the backend cannot answer: never allow unmetered."""
        ...

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        """Release the reservation and add ``actual`` to spent in its own buckets. Idempotent per
        reservation id: a retry after a timeout does not charge twice."""
        ...

    async def charge(self, caps: Sequence[Cap], amount: Decimal, at: datetime) -> None:
        """Add spend without a reservation (ledger recovery). Never refused: the money is spent."""
        ...

    async def status(self, caps: Sequence[Cap], at: datetime) -> list[CapStatus]: ...

    async def rebuild(self, spent_by_bucket: Mapping[str, Decimal], reserved_by_bucket: Mapping[str, Decimal]) -> None:
        """Seed counters from the ledger at start-up (rules per backend)."""
        ...

    async def close(self) -> None: ...


# -- shared by both backends ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """The caps of one call resolved to distinct buckets (a bucket is charged once per call even if
    two caps name it) and their limits in nano-USD."""

    caps: tuple[Cap, ...]
    buckets: tuple[str, ...]
    cap_bucket: tuple[int, ...]  # index into buckets, per cap
    cap_nanos: tuple[int, ...]


def _plan(caps: Sequence[Cap], at: datetime, month_tz: tzinfo) -> _Plan:
    buckets: list[str] = []
    index: dict[str, int] = {}
    cap_bucket: list[int] = []
    for cap in caps:
        name = bucket_for(cap, at, month_tz=month_tz)
        if name not in index:
            index[name] = len(buckets)
            buckets.append(name)
        cap_bucket.append(index[name])
    return _Plan(tuple(caps), tuple(buckets), tuple(cap_bucket), tuple(c.nanos for c in caps))


def _refusal(cap: Cap, headroom: int, amount: int) -> BudgetExceeded:
    remaining = _usd(max(headroom, 0))
    return BudgetExceeded(
        f"budget exceeded: the {cap.scope} cap of ${_usd(cap.nanos)} ({cap.period}) has ${remaining} left; "
        f"this call may cost up to ${_usd(amount)}",
        scope=cap.scope,
        cap=_usd(cap.nanos),
        remaining=remaining,
        period=cap.period,
    )


def _binding(plan: _Plan, used_by_bucket: Sequence[int], amount: int) -> tuple[int, int] | None:
    """(cap index, headroom) of the tightest cap the amount does not fit, or None if it fits all.
    Used is spent + reserved per bucket; the tightest cap is the one with the least headroom."""
    worst: tuple[int, int] | None = None
    for i, b in enumerate(plan.cap_bucket):
        h = plan.cap_nanos[i] - used_by_bucket[b]
        if amount > h and (worst is None or h < worst[1]):
            worst = (i, h)
    return worst


def _minute(at: datetime) -> int:
    """Epoch minute of ``at``: the burn-rate slot."""
    return int(_aware(at).timestamp()) // 60


def _burn_window(cap: Cap, at: datetime, month_tz: tzinfo) -> tuple[int, int, datetime]:
    """(first slot, last slot, window start) for the burn rate of ``cap`` at ``at``."""
    last = _minute(at)
    first = last - (_BURN_SLOTS - 1)
    start = datetime.fromtimestamp(first * 60, UTC)
    began = period_start(cap, at, month_tz=month_tz)
    if began is not None and began > start:
        start = began
        first = int(began.timestamp()) // 60
    return first, last, start


def _burn_rate(settled_nanos: int, since: datetime, at: datetime) -> Decimal:
    span = max(at - since, _MIN_BURN_SPAN)
    micros = span // timedelta(microseconds=1)
    rate = from_nanos(settled_nanos) * Decimal(3_600_000_000) / Decimal(micros)
    return rate.quantize(Decimal(1).scaleb(-_NANOS_PER_USD), rounding=ROUND_HALF_EVEN)


def _status_row(
    cap: Cap, bucket: str, spent: int, reserved: int, burned: int, since: datetime, at: datetime
) -> CapStatus:
    return CapStatus(
        cap=cap,
        bucket=bucket,
        spent=from_nanos(spent),
        reserved=from_nanos(reserved),
        remaining=from_nanos(max(cap.nanos - spent - reserved, 0)),
        burn_rate_per_hour=_burn_rate(burned, since, at),
        burn_since=since,
    )


def _warn_overrun(reservation: Reservation, actual: int, held: int) -> None:
    # Recorded as is: the ledger must match the bill. With true worst-case reservations this cannot
    # happen; if it does, the estimator has a hole (LiteLLM #26672: $99.10 spent against $30).
    if actual > held:
        _log.warning(
            "reservation %s settled at $%s, above the $%s reserved: the worst-case estimate was not a bound",
            reservation.reservation_id,
            _usd(actual),
            _usd(held),
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- in-process backend -----------------------------------------------------------------------


class _Bucket:
    __slots__ = ("spent", "reserved")

    def __init__(self, spent: int = 0, reserved: int = 0) -> None:
        self.spent = spent
        self.reserved = reserved


class MemoryCounters:
    """Counters in this process: the default, no server needed.

    Every method mutates state synchronously, without an ``await`` between check and increment, so
    on one event loop each reserve/settle is atomic (the read-add-set race of LiteLLM #35567 cannot
    happen). Not thread-safe: use it from the event loop that serves the proxy.

    ``rebuild`` replaces the whole state. The counters start empty, so the appliance must call it at
    start-up with the ledger's view, or spend from before the restart is forgotten.
    """

    def __init__(
        self,
        *,
        month_tz: tzinfo = UTC,
        clock: Callable[[], datetime] = _utcnow,
        settled_ttl_s: float = 86_400.0,
    ) -> None:
        self._month_tz = month_tz
        self._clock = clock
        # How long a settled id is remembered so a retried settle stays a no-op: retries come
        # seconds after a timeout, a day is ample and keeps memory bounded.
        self._settled_ttl_s = settled_ttl_s
        self._buckets: dict[str, _Bucket] = {}
        self._held: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._settled: dict[str, float] = {}  # id -> monotonic expiry, in insertion order
        self._burn: dict[str, dict[int, int]] = {}

    async def reserve(self, reservation_id: str, caps: Sequence[Cap], amount: Decimal, at: datetime) -> Reservation:
        n = _amount_nanos(amount, "reservation amount")
        plan = _plan(caps, at, self._month_tz)
        if plan.buckets:
            if reservation_id in self._held or reservation_id in self._settled:
                raise DuplicateReservation(f"reservation id {reservation_id!r} was already used")
            used = [self._used(b) for b in plan.buckets]
            worst = _binding(plan, used, n)
            if worst is not None:
                raise _refusal(plan.caps[worst[0]], worst[1], n)
            for b in plan.buckets:
                self._buckets.setdefault(b, _Bucket()).reserved += n
            self._held[reservation_id] = (n, plan.buckets)
            left = min(plan.cap_nanos[i] - used[b] - n for i, b in enumerate(plan.cap_bucket))
            return Reservation(reservation_id, from_nanos(n), plan.buckets, plan.caps, at, from_nanos(left))
        return Reservation(reservation_id, from_nanos(n), plan.buckets, plan.caps, at)

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        if not reservation.buckets:
            return
        n = _amount_nanos(actual, "actual cost")
        if n > MAX_NANOS:
            raise ValueError(f"actual cost {actual} exceeds the ${_usd(MAX_NANOS)} limit")
        rid = reservation.reservation_id
        self._prune_settled()
        if rid in self._settled:
            return  # a retry: already charged once
        held = self._held.pop(rid, None)
        if held is None:
            # Not held here (e.g. made before a restart and rebuilt as reserved): charge what was
            # spent, release nothing; over-counting is the safe side.
            _log.warning("settling unknown reservation %s: charging $%s, releasing nothing", rid, _usd(n))
            buckets = reservation.buckets
        else:
            held_n, buckets = held
            _warn_overrun(reservation, n, held_n)
            for b in buckets:
                self._buckets[b].reserved -= held_n
        self._add_spent(buckets, n, self._clock())
        self._settled[rid] = time.monotonic() + self._settled_ttl_s

    async def charge(self, caps: Sequence[Cap], amount: Decimal, at: datetime) -> None:
        n = _amount_nanos(amount, "charge")
        self._add_spent(_plan(caps, at, self._month_tz).buckets, n, at)

    async def status(self, caps: Sequence[Cap], at: datetime) -> list[CapStatus]:
        rows = []
        for cap in caps:
            name = bucket_for(cap, at, month_tz=self._month_tz)
            bucket = self._buckets.get(name, _Bucket())
            first, last, since = _burn_window(cap, at, self._month_tz)
            slots = self._burn.get(name, {})
            burned = sum(v for m, v in slots.items() if first <= m <= last)
            rows.append(_status_row(cap, name, bucket.spent, bucket.reserved, burned, since, at))
        return rows

    async def rebuild(self, spent_by_bucket: Mapping[str, Decimal], reserved_by_bucket: Mapping[str, Decimal]) -> None:
        """Replace all state with the ledger's view. ``reserved_by_bucket`` (open intents at their
        worst case) is held with no reservation id, so it is never released: that money may have been
        spent by the crashed process and only the provider's bill can say how much."""
        buckets: dict[str, _Bucket] = {}
        for name, d in spent_by_bucket.items():
            buckets.setdefault(name, _Bucket()).spent = _amount_nanos(d, f"spent of {name}")
        for name, d in reserved_by_bucket.items():
            buckets.setdefault(name, _Bucket()).reserved = _amount_nanos(d, f"reserved of {name}")
        self._buckets = buckets
        self._held = {}
        self._settled = {}
        self._burn = {}

    async def close(self) -> None:
        return None

    def _used(self, name: str) -> int:
        bucket = self._buckets.get(name)
        return 0 if bucket is None else bucket.spent + bucket.reserved

    def _add_spent(self, buckets: Sequence[str], n: int, at: datetime) -> None:
        minute = _minute(at)
        for b in buckets:
            self._buckets.setdefault(b, _Bucket()).spent += n
            slots = self._burn.setdefault(b, {})
            slots[minute] = slots.get(minute, 0) + n
            if len(slots) > 2 * _BURN_SLOTS:  # amortised pruning keeps a busy bucket at ~60 slots
                for m in [m for m in slots if m < minute - _BURN_SLOTS]:
                    del slots[m]

    def _prune_settled(self) -> None:
        now = time.monotonic()
        settled = self._settled
        while settled:
            rid = next(iter(settled))
            if settled[rid] > now:
                break
            del settled[rid]


def counters_from_setting(setting: str, **kw: Any) -> Counters:
    """The one setting that picks the backend: ``memory`` or ``redis://host:port/db``
    (also ``rediss://`` and ``unix://``). Keyword arguments go to the backend's constructor."""
    if setting == "memory":
        return MemoryCounters(**kw)
    if setting.startswith(("redis://", "rediss://", "unix://")):
        from .budget_redis import RedisCounters  # deferred: the in-process default needs no redis import

        return RedisCounters(setting, **kw)
    raise ConfigError(f"budget counters must be 'memory' or a redis:// URL, got {setting!r}")
