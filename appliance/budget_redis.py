"""Budget counters in Redis, shared by several appliance processes or VMs.

Each reserve is ONE Lua script over all the call's buckets: check every cap, then HINCRBY every
bucket, with nothing able to run in between (Redis runs a script to completion). That is the
property LiteLLM lacks when it reads, adds and writes spend in separate steps (#35567, #40095).

Keys, all under one hash tag so a script's keys share a slot (``{visionality}`` by default):

* ``{p}:gen`` -- the generation key: present once the counters were seeded from a ledger.
* ``{p}:b:<bucket>`` -- hash ``spent``, ``reserved`` in integer nano-USD.
* ``{p}:r:<reservation id>`` -- hash ``state`` (``held`` | ``settled``), ``amount``: the record
  that makes settle idempotent. Held records live ``held_ttl_s`` (7 days; no call lasts that long),
  settled ones ``settled_ttl_s`` (1 day: long enough for any retry).
* ``{p}:burn:<bucket>:<epoch minute>`` -- spend settled in that minute, expiring after two hours.

Reserve and settle calls issued in the same event-loop turn go to Redis as one pipeline (one round
trip; each script still runs atomically on its own). A burst of 200 concurrent calls through redis-py
one command at a time took ~0.4 s on a loaded 2-core machine, longer than the 0.25 s timeout, and
would have failed closed as 503s; pipelined it is one round trip of a few milliseconds.

Fail closed, never open (Portkey 2.0 fails open when its counter cannot be read):

* Any Redis error or a reply slower than ``timeout_s`` raises :class:`BudgetUnavailable` (HTTP 503).
  The client does not retry: the timeout is the caller's whole wait.
* **Seeding rule.** ``reserve`` and ``status`` refuse with BudgetUnavailable while ``{p}:gen`` is
  absent. Redis without persistence that restarts comes back empty; counting from zero would grant
  every cap again. ``rebuild`` seeds only when the generation key is absent (``SET NX`` inside the
  seeding script), so when several nodes start, the first one seeds and the others change nothing:
  no double count. The ledger view handed to ``rebuild`` must cover every node's commit stream.
  A node restarting while Redis kept its state does not seed; its crashed reservations stay held.
  The remaining budget is still exact (the recovered ``unsettled`` row charges that same worst case),
  but ``budget status`` shows that money as reserved rather than spent until the next seed. If Redis
  loses the generation key while nodes run, the first refused call starts a re-seed (``on_unseeded``).
* Durability is Redis's: a failover to a replica that had not yet received the last writes, or a
  restart that reloads an old snapshot while keeping the generation key, undercounts. Run one
  primary with ``appendonly yes`` (``appendfsync always`` for the strict reading) where caps are hard,
  and a ``maxmemory-policy`` of ``noeviction`` or ``volatile-*``: bucket hashes have no TTL, so only
  an ``allkeys-*`` policy could evict one and forget spend.
* A reserve that times out may still have run. Its reservation would then hold budget that no one
  will settle, so it is cancelled in the background (settle at $0, bounded retries); the cancel
  leaves a tombstone so a late-arriving reserve with that id is refused rather than held.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from .budget import (
    MAX_NANOS,
    Cap,
    CapStatus,
    DuplicateReservation,
    Reservation,
    _amount_nanos,
    _burn_window,
    _minute,
    _plan,
    _refusal,
    _status_row,
    _usd,
    _utcnow,
    _warn_overrun,
    bucket_for,
    from_nanos,
)
from .errors import BudgetUnavailable, ConfigError

__all__ = ["RedisCounters"]

_log = logging.getLogger(__name__)

# KEYS: gen, record, bucket hashes...   ARGV: amount, held ttl, then per cap: bucket index, cap nanos.
# Returns {1, least headroom left} held, {0, cap index, headroom} refused, {-1} not seeded, {-2} id used.
# headroom = (cap - spent) - reserved: each operand < 2**53, so every step is exact in doubles and a
# negative result stays negative (see budget.MAX_NANOS).
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end
local amount = tonumber(ARGV[1])
local spent, reserved = {}, {}
for j = 3, #KEYS do
  local v = redis.call('HMGET', KEYS[j], 'spent', 'reserved')
  spent[j] = tonumber(v[1]) or 0
  reserved[j] = tonumber(v[2]) or 0
end
local worst_i, worst_h, least = 0, 0, nil
for i = 3, #ARGV, 2 do
  local j = tonumber(ARGV[i]) + 3  -- 0-based bucket index; bucket keys start at KEYS[3]
  local h = (tonumber(ARGV[i + 1]) - spent[j]) - reserved[j]
  if amount > h and (worst_i == 0 or h < worst_h) then
    worst_i, worst_h = (i - 1) / 2, h
  end
  if least == nil or h < least then least = h end
end
if worst_i > 0 then return {0, worst_i, worst_h} end
for j = 3, #KEYS do redis.call('HINCRBY', KEYS[j], 'reserved', ARGV[1]) end
redis.call('HSET', KEYS[2], 'state', 'held', 'amount', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {1, least - amount}
"""

# KEYS: record, n bucket hashes, n burn keys.   ARGV: actual, settled ttl, burn ttl.
# Returns {0} already settled (no-op), {1, held amount} settled, {2} no record (nothing released).
_SETTLE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'settled' then return {0} end
local n = (#KEYS - 1) / 2
local held = '0'
if state == 'held' then
  held = redis.call('HGET', KEYS[1], 'amount')
  -- negate as a string: '-0' is not an integer to Redis, and a Lua number above 1e14 would be
  -- formatted as 1.2e+15
  if held ~= '0' then
    for j = 2, n + 1 do redis.call('HINCRBY', KEYS[j], 'reserved', '-' .. held) end
  end
end
for j = 2, n + 1 do
  redis.call('HINCRBY', KEYS[j], 'spent', ARGV[1])
  redis.call('INCRBY', KEYS[j + n], ARGV[1])
  redis.call('EXPIRE', KEYS[j + n], ARGV[3])
end
redis.call('HSET', KEYS[1], 'state', 'settled')
redis.call('EXPIRE', KEYS[1], ARGV[2])
if state == 'held' then return {1, held} end
return {2}
"""

# KEYS: gen, bucket hashes...   ARGV: generation, then per bucket: spent, reserved.
_SEED = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
for j = 2, #KEYS do
  redis.call('HSET', KEYS[j], 'spent', ARGV[2 * j - 2], 'reserved', ARGV[2 * j - 1])
end
return 1
"""

_BURN_TTL_S = 2 * 3600  # the burn window is one hour; two leave room for clock skew between nodes
_CANCEL_DELAYS_S = (0.5, 2.0, 8.0)
_MAX_PENDING_CANCELS = 1024


class _Batcher:
    """Coalesces the script calls made in one event-loop turn into one pipeline (one round trip)."""

    def __init__(self, client: aioredis.Redis, scripts: Sequence[AsyncScript], timeout_s: float) -> None:
        self._client = client
        self._scripts = scripts
        self._timeout_s = timeout_s
        self._pending: list[tuple[str, list[Any], asyncio.Future[Any]]] = []
        self._loaded = False
        self._sends: set[asyncio.Task[None]] = set()

    def submit(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script.sha, [len(keys), *keys, *args], future))
        return future

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, calls: list[tuple[str, list[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._execute(calls)
                retry = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if retry:  # Redis restarted or flushed its script cache: load once, resend those
                    self._loaded = False
                    again = await self._execute([calls[i] for i in retry])
                    for i, reply in zip(retry, again, strict=True):
                        replies[i] = reply
        except BaseException as e:  # every waiter must hear of the failure, even on cancellation
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(e if isinstance(e, Exception) else RedisError(repr(e)))
            if not isinstance(e, Exception):
                raise
            return
        for (_, _, future), reply in zip(calls, replies, strict=True):
            if future.done():  # the caller timed out and went away
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, calls: Sequence[tuple[str, list[Any], asyncio.Future[Any]]]) -> list[Any]:
        if not self._loaded:
            for script in self._scripts:
                await self._client.script_load(script.script)
            self._loaded = True
        if len(calls) == 1:  # a lone call: a plain command is cheaper in redis-py than a pipeline
            sha, argv, _ = calls[0]
            try:
                return [await self._client.evalsha(sha, *argv)]
            except NoScriptError as e:
                return [e]
        pipe = self._client.pipeline(transaction=False)
        for sha, argv, _ in calls:
            pipe.evalsha(sha, *argv)
        return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)


class RedisCounters:
    """Counters in Redis (``redis://host:port/db``), atomic across processes and machines."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "visionality",
        timeout_s: float = 0.25,
        month_tz: tzinfo = UTC,
        clock: Callable[[], datetime] = _utcnow,
        max_connections: int = 64,
        held_ttl_s: int = 7 * 86_400,
        settled_ttl_s: int = 86_400,
        on_unseeded: Callable[[], None] | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        # Called when Redis answers but has lost its seed (restarted empty while this node ran): the
        # appliance starts re-seeding from the ledger instead of answering 503 until someone restarts it.
        self._on_unseeded = on_unseeded
        self._month_tz = month_tz
        self._clock = clock
        self._held_ttl_s = held_ttl_s
        self._settled_ttl_s = settled_ttl_s
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigError(f"budget Redis prefix must be non-empty and brace-free (it is the hash tag): {prefix!r}")
        self._tag = "{" + prefix + "}"
        # A blocking pool bounds connections under a burst (200 concurrent calls must not open 200
        # sockets); waiting for one counts against timeout_s. No client-side retries: redis-py's
        # default retries with backoff would stretch a 0.25 s budget into seconds.
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as e:
            raise ConfigError(f"budget counters: invalid Redis URL {url!r}: {e}") from e
        self._redis = aioredis.Redis(connection_pool=pool)
        self._reserve_script = self._redis.register_script(_RESERVE)
        self._settle_script = self._redis.register_script(_SETTLE)
        self._seed_script = self._redis.register_script(_SEED)
        self._batcher = _Batcher(self._redis, (self._reserve_script, self._settle_script), timeout_s)
        self._cancels: set[asyncio.Task[None]] = set()
        self.generation: str | None = None  # set by rebuild() when this node seeded

    def _unseeded(self) -> None:
        if self._on_unseeded is not None:
            self._on_unseeded()

    # -- the Counters protocol --------------------------------------------------------------

    async def reserve(self, reservation_id: str, caps: Sequence[Cap], amount: Decimal, at: datetime) -> Reservation:
        n = _amount_nanos(amount, "reservation amount")
        plan = _plan(caps, at, self._month_tz)
        if not plan.buckets:
            return Reservation(reservation_id, from_nanos(n), (), (), at)
        # Above MAX_NANOS no cap can fit; checking with MAX_NANOS + 1 (exact in a double) refuses
        # it with the right remaining and never stores the oversized number.
        checked = min(n, MAX_NANOS + 1)
        keys = [self._tag + ":gen", self._record(reservation_id), *(self._bucket(b) for b in plan.buckets)]
        args: list[int] = [checked, self._held_ttl_s]
        for i, b in enumerate(plan.cap_bucket):
            args += [b, plan.cap_nanos[i]]
        try:
            reply = await self._run(self._batcher.submit(self._reserve_script, keys, args))
        except BudgetUnavailable:
            self._spawn_cancel(reservation_id, plan.buckets)
            raise
        code = int(reply[0])
        if code == 1:
            left = from_nanos(int(reply[1]))
            return Reservation(reservation_id, from_nanos(n), plan.buckets, plan.caps, at, left)
        if code == 0:
            raise _refusal(plan.caps[int(reply[1]) - 1], int(reply[2]), n)
        if code == -1:
            self._unseeded()
            raise BudgetUnavailable(
                "budget counters in Redis are not seeded (generation key absent: Redis restarted empty?); "
                "refusing until an appliance rebuilds them from the ledger"
            )
        raise DuplicateReservation(f"reservation id {reservation_id!r} was already used")

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        if not reservation.buckets:
            return
        n = _amount_nanos(actual, "actual cost")
        if n > MAX_NANOS:
            raise ValueError(f"actual cost {actual} exceeds the ${_usd(MAX_NANOS)} limit")
        try:
            reply = await self._settle_once(reservation.reservation_id, reservation.buckets, n)
        except BudgetUnavailable:
            # Settle is idempotent per id: retry in the background, or the worst case stays reserved for good.
            self._spawn_cancel(reservation.reservation_id, reservation.buckets, n)
            raise
        code = int(reply[0])
        if code == 1:
            _warn_overrun(reservation, n, int(reply[1]))
        elif code == 2:
            _log.warning(
                "settling unknown reservation %s: charging $%s, releasing nothing",
                reservation.reservation_id,
                _usd(n),
            )

    async def charge(self, caps: Sequence[Cap], amount: Decimal, at: datetime) -> None:
        n = _amount_nanos(amount, "charge")
        buckets = _plan(caps, at, self._month_tz).buckets
        if not buckets:
            return
        minute = _minute(at)
        pipe = self._redis.pipeline(transaction=True)
        for b in buckets:
            pipe.hincrby(self._bucket(b), "spent", n)
            pipe.incrby(self._burn(b, minute), n)
            pipe.expire(self._burn(b, minute), _BURN_TTL_S)
        await self._run(pipe.execute())

    async def status(self, caps: Sequence[Cap], at: datetime) -> list[CapStatus]:
        # One MULTI/EXEC so spent, reserved and burn are one consistent snapshot.
        pipe = self._redis.pipeline(transaction=True)
        pipe.exists(self._tag + ":gen")
        windows = []
        for cap in caps:
            name = bucket_for(cap, at, month_tz=self._month_tz)
            first, last, since = _burn_window(cap, at, self._month_tz)
            windows.append((name, since))
            pipe.hmget(self._bucket(name), "spent", "reserved")
            pipe.mget([self._burn(name, m) for m in range(first, last + 1)])
        replies = await self._run(pipe.execute())
        if not replies[0]:
            self._unseeded()
            raise BudgetUnavailable("budget counters in Redis are not seeded (generation key absent)")
        rows = []
        for i, cap in enumerate(caps):
            name, since = windows[i]
            spent, reserved = (int(v or 0) for v in replies[1 + 2 * i])
            burned = sum(int(v) for v in replies[2 + 2 * i] if v is not None)
            rows.append(_status_row(cap, name, spent, reserved, burned, since, at))
        return rows

    async def rebuild(self, spent_by_bucket: Mapping[str, Decimal], reserved_by_bucket: Mapping[str, Decimal]) -> None:
        """Seed Redis from the ledger only if no node has (generation key absent, ``SET NX``).

        Seeding overwrites the buckets it names and deletes none. When the shared state is present
        this is a no-op (logged): Redis is then the truth and re-adding this node's ledger would count
        its spend twice. ``self.generation`` is set when this call seeded."""
        names = sorted(set(spent_by_bucket) | set(reserved_by_bucket))
        keys = [self._tag + ":gen", *(self._bucket(b) for b in names)]
        generation = f"{self._clock().isoformat()} {secrets.token_hex(8)}"
        args: list[str | int] = [generation]
        for b in names:
            args += [
                _amount_nanos(spent_by_bucket.get(b, Decimal(0)), f"spent of {b}"),
                _amount_nanos(reserved_by_bucket.get(b, Decimal(0)), f"reserved of {b}"),
            ]
        seeded = await self._run(self._seed_script(keys=keys, args=args))
        if int(seeded):
            self.generation = generation
            _log.info("seeded %d budget buckets in Redis, generation %s", len(names), generation)
        else:
            _log.info("budget counters in Redis already seeded by another node; not seeding")

    async def close(self) -> None:
        for task in list(self._cancels):
            task.cancel()
        await asyncio.gather(*self._cancels, return_exceptions=True)
        await self._batcher.close()
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()

    # -- internals ---------------------------------------------------------------------------

    def _bucket(self, name: str) -> str:
        return f"{self._tag}:b:{name}"

    def _record(self, reservation_id: str) -> str:
        return f"{self._tag}:r:{reservation_id}"

    def _burn(self, name: str, minute: int) -> str:
        return f"{self._tag}:burn:{name}:{minute}"

    async def _run(self, call: Any) -> Any:
        """Await one Redis round trip within timeout_s; every failure becomes BudgetUnavailable."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call
        except (RedisError, OSError, TimeoutError) as e:
            raise BudgetUnavailable(f"budget counters unavailable (Redis): {e!r}") from e

    async def _settle_once(self, reservation_id: str, buckets: Sequence[str], n: int) -> Any:
        minute = _minute(self._clock())
        keys = [
            self._record(reservation_id),
            *(self._bucket(b) for b in buckets),
            *(self._burn(b, minute) for b in buckets),
        ]
        args = [n, self._settled_ttl_s, _BURN_TTL_S]
        return await self._run(self._batcher.submit(self._settle_script, keys, args))

    def _spawn_cancel(self, reservation_id: str, buckets: Sequence[str], n: int = 0) -> None:
        """Settle ``reservation_id`` at ``n`` nano-USD in the background, with bounded retries: a timed-out
        reserve is cancelled (n = 0), a timed-out settle is retried at its actual cost."""
        if len(self._cancels) >= _MAX_PENDING_CANCELS:
            # Redis is down hard; cancels would only pile up. The seeding rule and the ledger cover it.
            _log.error("not settling timed-out reservation %s: too many retries pending", reservation_id)
            return
        task = asyncio.get_running_loop().create_task(self._cancel(reservation_id, tuple(buckets), n))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _cancel(self, reservation_id: str, buckets: tuple[str, ...], n: int = 0) -> None:
        for delay in _CANCEL_DELAYS_S:
            await asyncio.sleep(delay)
            try:
                await self._settle_once(reservation_id, buckets, n)
                return
            except BudgetUnavailable:
                continue
        _log.error(
            "could not cancel timed-out reservation %s: its worst case stays reserved until rebuilt", reservation_id
        )
