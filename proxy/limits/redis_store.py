"""The shared limit store (``redis://``): every replica decides through one Lua script.

One script per decision is one round trip and atomic on the server; it reads the time from
Redis (``TIME``), so replicas with skewed clocks still share one window. Each window is a
sorted set of its accepted requests scored by time in microseconds, trimmed to the window's limit
and expiring with it (every step O(log n)). An idempotency record is a hash: fingerprint, state,
in-flight deadline, answer. ``persistence_gap`` says whether they would outlive a restart.

Any Redis failure is ``StorageUnavailable`` (fail closed); redis-py reconnects on the next
command, so the proxy recovers by itself.

Redis replicates asynchronously: a record the primary acknowledged may die with it in a
failover. With ``replica_acks`` set, an Idempotency-Key's reservation, and then its answer,
must be acknowledged by that many replicas (``WAIT``, on the connection that wrote it, within
``replica_wait_seconds``) before Nector is called and before the answer is given: a
reservation no replica acknowledged is released and refused (503), so a retry after a
failover finds the reservation or the answer, and is never paid twice. A Redis without replicas
sets none (``limits.replica_acks``; docs/operations.md).

A customer over quota is remembered in the process until its full window frees
(``RefusedUntil``): a window only fills between now and then (no replica can admit this customer
on this trigger meanwhile, and counted requests leave only by age), so asking Redis again
before that moment can only give the same 429. Customers spinning past their quota, the bulk of
what the proxy refuses, then cost no round trip. A request with an Idempotency-Key still asks
Redis, which may hold its answer to replay.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from proxy.errors import StorageUnavailable, failure_cause
from proxy.limits.bounded import ExpiringMap
from proxy.limits.coins import CoinWindow
from proxy.limits.decisions import (
    REFUSAL_MARGIN_SECONDS,
    Decision,
    Outcome,
    StoredAnswer,
    WindowState,
)
from proxy.limits.keys import IdempotencyClaim, Window
from proxy.limits.redis_client import connect, persistence_gap
from proxy.limits.redis_scripts import ADMIT, FINISH, RECALL, RELEASE, SETTLE, UNLOCK

_US = 1_000_000
LOG = logging.getLogger("trigger_proxy")
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
        replica_acks: int = 0,
        replica_wait_seconds: float = 0.5,
    ) -> None:
        self._prefix = prefix
        self._acks = replica_acks
        self._wait_ms = max(1, round(replica_wait_seconds * 1000))
        # A WAIT must end before the socket's own timeout does.
        timeout_seconds = (
            max(timeout_seconds, replica_wait_seconds + 1.0) if replica_acks else timeout_seconds
        )
        self._redis = connect(url, timeout_seconds=timeout_seconds, max_connections=max_connections)
        self._admit = self._redis.register_script(ADMIT)
        self._finish = self._redis.register_script(FINISH)
        self._release = self._redis.register_script(RELEASE)
        self._unlock = self._redis.register_script(UNLOCK)
        self._recall = self._redis.register_script(RECALL)
        self._settle = self._redis.register_script(SETTLE)
        self.clock = time.monotonic  # the store's times are relative: any steady clock
        self._refused = RefusedUntil(clock=self.clock)

    async def admit(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        coins: Sequence[CoinWindow] = (),
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
        if coins:
            args.append(len(coins))
            for c in coins:
                keys += [self._prefix + c.key, self._prefix + c.key + ":n"]
                args += [c.limit, c.seconds * _US, c.coins]
        if claim is not None and self._acks:
            reply, acked = await self._replicated(self._admit, keys, args)
        else:
            reply, acked = await self._call(self._admit, keys, args), self._acks
        code = int(reply[0])
        if code == 0:
            if acked < self._acks:
                # No replica holds the reservation: a failover now would forget it, and a
                # retry would be paid again. Refused before Nector, the key free again.
                await self.release(windows, budgets, claim, member, coins)
                raise StorageUnavailable(cause="no_replica_acknowledged")
            return Decision(Outcome.ADMITTED, windows=_states(reply[1:]), ticket=member)
        if code == 1:
            decision = Decision(Outcome.RATE_LIMITED, int(reply[1]) / _US, _states(reply[2:]))
            self._refused.remember(windows[0].key, decision)
            return decision
        if code == 2:
            return Decision(Outcome.BUDGET_SPENT, int(reply[1]) / _US)
        return _decided(code, reply)

    async def recall(self, claim: IdempotencyClaim) -> Decision | None:
        reply = await self._call(self._recall, [self._prefix + claim.key], [claim.fingerprint])
        code = int(reply[0])
        return None if code < 0 else _decided(code, reply)

    async def settle(
        self, coins: Sequence[CoinWindow], ticket: float | str | None, paid: int
    ) -> None:
        await self._settle_coins(coins, ticket, paid)

    async def _settle_coins(
        self, coins: Sequence[CoinWindow], ticket: float | str | None, paid: int | str
    ) -> None:
        # One reservation per request: every coin window of it holds the same coins.
        keys = [k for c in coins for k in (self._prefix + c.key, self._prefix + c.key + ":n")]
        await self._call(self._settle, keys, [ticket, coins[0].coins, paid])

    async def finish(self, claim: IdempotencyClaim, answer: StoredAnswer) -> None:
        keys = [self._prefix + claim.key]
        args = [claim.fingerprint, answer.encode(), claim.ttl_seconds * 1000]
        if not self._acks:
            await self._call(self._finish, keys, args)
            return
        _, acked = await self._replicated(self._finish, keys, args)
        if acked < self._acks:
            # The answer stands (Nector was called); a failover before it replicates answers a
            # retry as lost (502), never paid twice.
            LOG.warning("no replica acknowledged an idempotency record's answer in time")

    async def _replicated(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        """Run ``script``, then, if it wrote (its first value 0; FINISH's only one), WAIT on the
        same connection: WAIT counts the replicas holding that connection's writes."""
        try:
            async with self._redis.client() as connection:
                reply = await script(keys=keys, args=args, client=connection)
                first = reply[0] if isinstance(reply, list) else reply
                if int(first) != 0:
                    return reply, self._acks
                acked = await connection.execute_command(  # type: ignore[no-untyped-call]
                    "WAIT", self._acks, self._wait_ms
                )
        except (RedisError, OSError) as exc:
            raise StorageUnavailable(cause=failure_cause(exc)) from exc
        return reply, int(acked)

    async def release(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        ticket: float | str | None,
        coins: Sequence[CoinWindow] = (),
    ) -> None:
        if coins:
            await self._settle_coins(coins, ticket, "")
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

    async def persistence_gap(self) -> str | None:
        return await persistence_gap(self._redis)

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


def _decided(code: int, reply: Sequence[Any]) -> Decision:
    """A refusal or replay ``ADMIT`` or ``RECALL`` answered (codes 3-7)."""
    if code == 3:
        return Decision(Outcome.REPLAY, answer=StoredAnswer.decode(reply[1]))
    if code == 4:
        return Decision(Outcome.IN_FLIGHT, int(reply[1]) / _US)
    if code == 5:
        return Decision(Outcome.KEY_REUSED)
    if code == 7:
        return Decision(Outcome.COINS_SPENT, int(reply[1]) / _US)
    return Decision(Outcome.LOST)


def _states(flat: Sequence[Any]) -> tuple[WindowState, ...]:
    return tuple(WindowState(int(flat[i]), int(flat[i + 1]) / _US) for i in range(0, len(flat), 2))
