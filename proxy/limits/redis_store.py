"""The shared limit store (``redis://``): every replica decides through one Lua script.

One script per decision is one round trip and atomic on the server; it reads the time from
Redis (``TIME``), so replicas with skewed clocks still share one window. Each window is a
sorted set of its accepted requests scored by time in microseconds, trimmed to the window's limit
and expiring with it, so every step is O(log n). An idempotency record is a hash: fingerprint,
state, in-flight deadline, answer.

Any Redis failure is ``StorageUnavailable`` (fail closed); redis-py reconnects on the next
command, so the proxy recovers by itself when Redis is back.

A customer over quota is remembered in the process until its full window frees
(``RefusedUntil``): a window only fills between now and then (no replica can admit this customer
on this trigger meanwhile, and counted requests leave only by age), so asking Redis again
before that moment can only give the same 429. Customers spinning past their quota, the bulk of
what the proxy refuses, then cost no round trip. A request with an Idempotency-Key still asks
Redis, which may hold its answer to replay.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from proxy.errors import StorageUnavailable, failure_cause
from proxy.limits.bounded import ExpiringMap
from proxy.limits.decisions import (
    REFUSAL_MARGIN_SECONDS,
    Decision,
    Outcome,
    StoredAnswer,
    WindowState,
)
from proxy.limits.keys import IdempotencyClaim, Window
from proxy.limits.redis_client import connect

# KEYS: the idempotency key (or the prefix alone when there is none), then the windows:
#       the customer's first, the budgets last.
# ARGV: number of windows, number of customer windows, fingerprint, in-flight µs, ttl ms,
#       a unique id for this request's entries, then limit and length in µs for each window.
# Returns {0, remaining1, reset1_us, ...} when admitted, {1, wait_us, remaining1, reset1_us, ...}
#       when a customer window is full, {2, wait_us} budget spent, {3, answer} replay,
#       {4, wait_us} in flight, {5} key reused, {6} lost.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Lua 5.1's tostring keeps 14 digits; microsecond times need 16.
local function int(x) return string.format('%.0f', x) end
local n, ncust = tonumber(ARGV[1]), tonumber(ARGV[2])
local claim = ARGV[3] ~= ''
if claim then
  local rec = redis.call('HMGET', KEYS[1], 'f', 's', 'd', 'a')
  if rec[1] then
    if rec[1] ~= ARGV[3] then return {5} end
    if rec[2] == 'done' then return {3, rec[4]} end
    local deadline = tonumber(rec[3])
    if now < deadline then return {4, deadline - now} end
    return {6}
  end
end
local counts, waits, oldest = {}, {}, {}
local cwait, bwait = 0, 0
for i = 1, n do
  local key, limit, len = KEYS[i + 1], tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  -- Entries at or before now - len have left the window; the set never holds more than limit.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - len))
  local c = redis.call('ZCARD', key)
  local old, w = now, 0
  if c > 0 then
    old = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
    if c >= limit then w = old + len - now end
  end
  counts[i], waits[i], oldest[i] = c, w, old
  if i <= ncust then
    if w > cwait then cwait = w end
  elseif w > bwait then bwait = w end
end
if cwait > 0 then
  local out = {1, cwait}
  for i = 1, ncust do
    local limit, len = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
    local reset = waits[i]
    if reset == 0 then reset = oldest[i] + len - now end
    out[#out + 1] = math.max(0, limit - counts[i])
    out[#out + 1] = reset
  end
  return out
end
if bwait > 0 then return {2, bwait} end
local out = {0}
local member = ARGV[6]
for i = 1, n do
  local key, limit, len = KEYS[i + 1], tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  redis.call('ZADD', key, int(now), member)
  if counts[i] + 1 > limit then redis.call('ZREMRANGEBYRANK', key, 0, counts[i] - limit) end
  redis.call('PEXPIRE', key, math.ceil(len / 1000))
  if i <= ncust then
    out[#out + 1] = limit - counts[i] - 1
    out[#out + 1] = oldest[i] + len - now
  end
end
if claim then
  redis.call('HSET', KEYS[1], 'f', ARGV[3], 's', 'run', 'd', int(now + tonumber(ARGV[4])))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return out
"""

# KEYS: the idempotency key. ARGV: fingerprint, answer, ttl ms.
FINISH = """
if redis.call('HGET', KEYS[1], 'f') == ARGV[1] then
  redis.call('HSET', KEYS[1], 's', 'done', 'a', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
"""

# KEYS: the idempotency key (or the prefix alone), then every window the request spent.
# ARGV: the request's member in the windows (its ticket), the fingerprint ('' for no claim).
RELEASE = """
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
if ARGV[2] ~= '' then
  local rec = redis.call('HMGET', KEYS[1], 'f', 's')
  if rec[1] == ARGV[2] and rec[2] == 'run' then redis.call('DEL', KEYS[1]) end
end
return 0
"""

# KEYS: a read's fill lock. ARGV: the token that took it. Only its holder drops it.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

_US = 1_000_000
# How many over-quota customers a process remembers.
REFUSALS_REMEMBERED = 10_000


class RefusedUntil:
    """Customers (by their first window's key) refused for quota, and until when."""

    def __init__(
        self, *, size: int = REFUSALS_REMEMBERED, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # key -> (when the full window frees, the windows' remaining counts and reset times),
        # kept until just before the window frees
        self._known: ExpiringMap[str, tuple[float, tuple[tuple[int, float], ...]]] = ExpiringMap(
            size, clock
        )

    def get(self, key: str) -> Decision | None:
        known = self._known.get(key)
        if known is None:
            return None
        now = self._known.clock()
        frees_at, windows = known
        # Retry-After and the resets count from the unadjusted moment: never early.
        states = tuple(WindowState(left, max(0.0, at - now)) for left, at in windows)
        return Decision(Outcome.RATE_LIMITED, frees_at - now, states)

    def remember(self, key: str, decision: Decision) -> None:
        now = self._known.clock()
        frees_at = now + decision.retry_after
        windows = tuple((state.remaining, now + state.reset) for state in decision.windows)
        self._known.put(key, frees_at - REFUSAL_MARGIN_SECONDS, (frees_at, windows))


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "trigger-proxy:",
        timeout_seconds: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        self._prefix = prefix
        self._redis = connect(url, timeout_seconds=timeout_seconds, max_connections=max_connections)
        self._admit = self._redis.register_script(ADMIT)
        self._finish = self._redis.register_script(FINISH)
        self._release = self._redis.register_script(RELEASE)
        self._unlock = self._redis.register_script(UNLOCK)
        self.clock = time.monotonic  # the store's times are relative: any steady clock
        self._refused = RefusedUntil(clock=self.clock)

    async def admit(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
    ) -> Decision:
        if claim is None and windows:
            known = self._refused.get(windows[0].key)
            if known is not None:
                return known
        every = [*windows, *budgets]
        keys = [self._prefix + (claim.key if claim else "")]
        keys += [self._prefix + w.key for w in every]
        args: list[Any] = [len(every), len(windows)]
        if claim is not None:
            args += [
                claim.fingerprint,
                int(claim.in_flight_seconds * _US),
                claim.ttl_seconds * 1000,
            ]
        else:
            args += ["", 0, 0]
        member = uuid.uuid4().hex
        args.append(member)
        for w in every:
            args += [w.limit, w.seconds * _US]
        reply = await self._call(self._admit, keys, args)
        code = int(reply[0])
        if code == 0:
            return Decision(Outcome.ADMITTED, windows=_states(reply[1:]), ticket=member)
        if code == 1:
            decision = Decision(Outcome.RATE_LIMITED, int(reply[1]) / _US, _states(reply[2:]))
            self._refused.remember(windows[0].key, decision)
            return decision
        if code == 2:
            return Decision(Outcome.BUDGET_SPENT, int(reply[1]) / _US)
        if code == 3:
            return Decision(Outcome.REPLAY, answer=StoredAnswer.decode(reply[1]))
        if code == 4:
            return Decision(Outcome.IN_FLIGHT, int(reply[1]) / _US)
        if code == 5:
            return Decision(Outcome.KEY_REUSED)
        return Decision(Outcome.LOST)

    async def finish(self, claim: IdempotencyClaim, answer: StoredAnswer) -> None:
        await self._call(
            self._finish,
            [self._prefix + claim.key],
            [claim.fingerprint, answer.encode(), claim.ttl_seconds * 1000],
        )

    async def release(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        ticket: float | str | None,
    ) -> None:
        every = [*windows, *budgets]
        keys = [self._prefix + (claim.key if claim else "")]
        keys += [self._prefix + w.key for w in every]
        await self._call(self._release, keys, [ticket, claim.fingerprint if claim else ""])

    def blobs(self) -> RedisBlobs:
        """Where the replicas share workspace-wide reads (``reads.cache.ReadCache``)."""
        return RedisBlobs(self)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StorageUnavailable(cause=failure_cause(exc)) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise StorageUnavailable(cause=failure_cause(exc)) from exc


class RedisBlobs:
    """``limits.stores.Blobs`` on the store's connections: cached reads and their fill locks."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._token = uuid.uuid4().hex  # this process's, for its locks

    async def get(self, key: str) -> bytes | None:
        blob: bytes | None = await self._do(lambda r, k: r.get(k), "r:" + key)
        return blob

    async def put(self, key: str, blob: bytes, ttl_seconds: float) -> None:
        ttl = max(1, round(ttl_seconds * 1000))
        await self._do(lambda r, k: r.set(k, blob, px=ttl), "r:" + key)

    async def lock(self, key: str, ttl_seconds: float) -> bool:
        ttl = max(1, round(ttl_seconds * 1000))
        token = self._token
        return bool(await self._do(lambda r, k: r.set(k, token, nx=True, px=ttl), "rl:" + key))

    async def unlock(self, key: str) -> None:
        store = self._store
        await store._call(store._unlock, [store._prefix + "rl:" + key], [self._token])

    async def _do(self, command: Callable[[Any, str], Any], key: str) -> Any:
        store = self._store
        try:
            return await command(store._redis, store._prefix + key)
        except (RedisError, OSError) as exc:
            raise StorageUnavailable(cause=failure_cause(exc)) from exc


def _states(flat: Sequence[Any]) -> tuple[WindowState, ...]:
    return tuple(WindowState(int(flat[i]), int(flat[i + 1]) / _US) for i in range(0, len(flat), 2))
