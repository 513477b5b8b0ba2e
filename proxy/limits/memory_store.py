"""The in-process limit store (``memory://``): one process only, bounded.

Every decision runs without an ``await`` between its read and its write, so on one event loop
it is atomic. The store holds at most ``max_keys`` live entries; at the bound a request that
would add one is refused with ``StorageUnavailable`` rather than evicting anything: dropping a
window would hand a customer fresh quota, dropping an idempotency record could pay a retry twice.

It is built to stay small with a million customers: keys are held as bytes, a digest in them
raw (``keys.compact``); a window is a bare time or list of times (its length is in its key);
an answered idempotency record is one bytes object (expiry, fingerprint, answer); and
expiry is tracked in per-second buckets of keys (one pointer per key) swept at most once a
second; a key still alive when its bucket comes due is moved to the bucket of its new expiry.
"""

from __future__ import annotations

import bisect
import heapq
import math
import struct
import time
from collections.abc import Callable, Sequence

from proxy.errors import StorageUnavailable
from proxy.limits.coins import CoinLog, CoinWindow, coin_wait
from proxy.limits.decisions import Decision, Outcome, StoredAnswer, WindowState
from proxy.limits.keys import DIGEST_BYTES, IdempotencyClaim, Window, compact, window_seconds

SWEEP_INTERVAL = 1.0


class _InFlight:
    """An idempotency record whose first call is still running."""

    __slots__ = ("deadline", "expires_at", "fingerprint")

    def __init__(self, fingerprint: bytes, deadline: float, expires_at: float) -> None:
        self.fingerprint = fingerprint
        self.deadline = deadline
        self.expires_at = expires_at


# An answered record: its expiry, the request's fingerprint and the answer, in one bytes object
# rather than an object holding three.
_EXPIRY = struct.Struct("<d")
_ANSWER_AT = _EXPIRY.size + DIGEST_BYTES
_Record = _InFlight | bytes


def _expires_at(record: _Record) -> float:
    if isinstance(record, bytes):
        expires_at: float = _EXPIRY.unpack_from(record)[0]
        return expires_at
    return record.expires_at


def _fingerprint(record: _Record) -> bytes:
    return record[_EXPIRY.size : _ANSWER_AT] if isinstance(record, bytes) else record.fingerprint


# A window's log: the accepted times, oldest first, at most its limit of them. A window with one
# time in it (every customer after a first spin, the usual case) holds the bare float: a list
# would cost about 80 bytes more per customer.
Stamps = float | list[float]


def _state(stamps: Stamps | None, limit: int, seconds: int, now: float) -> tuple[int, float, float]:
    """(requests counted in the window, seconds until the window has room, oldest counted).

    A list of stamps is sorted, so the window's start is found by bisection: O(log n).
    """
    if stamps is None:
        return 0, 0.0, now
    if not isinstance(stamps, list):
        if stamps <= now - seconds:
            return 0, 0.0, now
        return 1, stamps + seconds - now if limit <= 1 else 0.0, stamps
    first = bisect.bisect_right(stamps, now - seconds)
    count = len(stamps) - first
    if count == 0:
        return 0, 0.0, now
    wait = stamps[-limit] + seconds - now if count >= limit else 0.0
    return count, wait, stamps[first]


class MemoryStore:
    def __init__(self, *, max_keys: int = 1_000_000, clock: Callable[[], float] = time.time):
        self._max_keys = max_keys
        self.clock = clock
        self._logs: dict[bytes, Stamps] = {}  # accepted times, oldest first, <= limit
        self._records: dict[bytes, _Record] = {}
        self._coins: dict[bytes, CoinLog] = {}  # coin budgets (coins.py)
        self._due: dict[int, list[bytes]] = {}  # whole second -> keys that may expire by then
        self._due_seconds: list[int] = []  # a heap of the keys of _due
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._logs) + len(self._records) + len(self._coins)

    async def admit(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        coins: Sequence[CoinWindow] = (),
    ) -> Decision:
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        record_key = None
        if claim is not None:
            record_key = compact(claim.key)
            record = self._records.get(record_key)
            if record is not None and _expires_at(record) > now:
                return _replay(record, claim, now)
        logs = self._logs
        keyed = [(compact(w.key), w) for w in windows]
        states = [_state(logs.get(k), w.limit, w.seconds, now) for k, w in keyed]
        customer_wait = max([wait for _, wait, _ in states], default=0.0)
        if customer_wait > 0:
            shown = tuple(
                [
                    WindowState(max(0, w.limit - c), wait or oldest + w.seconds - now)
                    for w, (c, wait, oldest) in zip(windows, states, strict=True)
                ]
            )
            return Decision(Outcome.RATE_LIMITED, customer_wait, shown)
        coin_keys = [compact(c.key) for c in coins]
        if coins:
            wait = coin_wait([self._coins.get(k) for k in coin_keys], coins, now)
            if wait > 0:
                return Decision(Outcome.COINS_SPENT, wait)
        budgeted = [(compact(b.key), b) for b in budgets]
        if budgets:
            wait = max([_state(logs.get(k), b.limit, b.seconds, now)[1] for k, b in budgeted])
            if wait > 0:
                return Decision(Outcome.BUDGET_SPENT, wait)
        spend = keyed + budgeted
        # At most one new key per window and one for the claim: far from the bound, nothing
        # needs counting.
        if len(self) + len(spend) + len(coins) + 1 > self._max_keys:
            new = [k for k, _ in spend if k not in logs]
            new += [k for k in coin_keys if k not in self._coins]
            self._make_room(now, new, record_key)
        for k, w in spend:
            self._spend(k, w, now)
        for k, c in zip(coin_keys, coins, strict=True):
            log = self._coins.get(k)
            if log is None:
                log = self._coins[k] = CoinLog()
                self._schedule(k, now + c.seconds)
            log.reserve(now, c.coins)
        if claim is not None and record_key is not None:
            expires_at = now + claim.ttl_seconds
            deadline = now + claim.in_flight_seconds
            self._records[record_key] = _InFlight(claim.fingerprint, deadline, expires_at)
            self._schedule(record_key, expires_at)
        shown = tuple(
            [
                WindowState(w.limit - c - 1, oldest + w.seconds - now)
                for w, (c, _, oldest) in zip(windows, states, strict=True)
            ]
        )
        return Decision(Outcome.ADMITTED, 0.0, shown, ticket=now)

    async def recall(self, claim: IdempotencyClaim) -> Decision | None:
        record = self._records.get(compact(claim.key))
        now = self.clock()
        if record is None or _expires_at(record) <= now:
            return None
        return _replay(record, claim, now)

    async def settle(
        self, coins: Sequence[CoinWindow], ticket: float | str | None, paid: int
    ) -> None:
        assert isinstance(ticket, (int, float)), "a memory store's ticket is its clock's time"
        for c in coins:
            log = self._coins.get(compact(c.key))
            if log is not None:
                log.change(ticket, c.coins, paid)

    async def finish(self, claim: IdempotencyClaim, answer: StoredAnswer) -> None:
        key = compact(claim.key)
        record = self._records.get(key)
        if record is None or _fingerprint(record) != claim.fingerprint:
            return
        # The reservation's bucket comes due first; the sweep then moves the key along.
        assert len(claim.fingerprint) == DIGEST_BYTES, "a record is read back at fixed offsets"
        expires_at = _EXPIRY.pack(self.clock() + claim.ttl_seconds)
        self._records[key] = expires_at + claim.fingerprint + answer.encode()

    async def release(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        ticket: float | str | None,
        coins: Sequence[CoinWindow] = (),
    ) -> None:
        assert isinstance(ticket, (int, float)), "a memory store's ticket is its clock's time"
        for c in coins:
            log = self._coins.get(compact(c.key))
            if log is not None:
                log.change(ticket, c.coins, None)
        logs = self._logs
        for w in [*windows, *budgets]:
            key = compact(w.key)
            stamps = logs.get(key)
            if isinstance(stamps, list):
                i = bisect.bisect_left(stamps, ticket)
                if i < len(stamps) and stamps[i] == ticket:
                    del stamps[i]
                if not stamps:
                    del logs[key]
            elif stamps is not None and stamps == ticket:
                del logs[key]
        if claim is not None:
            key = compact(claim.key)
            record = self._records.get(key)
            if isinstance(record, _InFlight) and record.fingerprint == claim.fingerprint:
                del self._records[key]

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _spend(self, key: bytes, w: Window, now: float) -> None:
        logs = self._logs
        stamps = logs.get(key)
        if stamps is None:
            logs[key] = now
            self._schedule(key, now + w.seconds)
            return
        if not isinstance(stamps, list):
            if w.limit == 1 or stamps <= now - w.seconds:  # the old time leaves the log
                logs[key] = now
                return
            stamps = logs[key] = [stamps]
        stamps.append(now)
        # Keep at most `limit` entries; drop expired ones only once they are half the list, so
        # the cost of deleting from the front stays O(1) per request, amortized.
        excess = len(stamps) - w.limit
        if excess > 0:
            del stamps[:excess]
        expired = bisect.bisect_right(stamps, now - w.seconds)
        if expired * 2 > len(stamps):
            del stamps[:expired]

    def _schedule(self, key: bytes, at: float) -> None:
        second = math.ceil(at)
        keys = self._due.get(second)
        if keys is None:
            keys = self._due[second] = []
            heapq.heappush(self._due_seconds, second)
        keys.append(key)

    def _make_room(self, now: float, new_keys: list[bytes], record_key: bytes | None) -> None:
        needed = len(new_keys) + (record_key is not None and record_key not in self._records)
        if len(self) + needed <= self._max_keys:
            return
        self._sweep(now, force=True)
        if len(self) + needed > self._max_keys:
            raise StorageUnavailable("the limit store is full", cause="memory_store_full")

    def _sweep(self, now: float, *, force: bool = False) -> None:
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        while self._due_seconds and self._due_seconds[0] <= now:
            for key in self._due.pop(heapq.heappop(self._due_seconds)):
                self._expire(key, now)

    def _expire(self, key: bytes, now: float) -> None:
        stamps = self._logs.get(key)
        if stamps is not None:
            newest = stamps[-1] if isinstance(stamps, list) else stamps
            expires_at = newest + window_seconds(key)
            if expires_at <= now:
                del self._logs[key]
            else:
                self._schedule(key, expires_at)
        log = self._coins.get(key)
        if log is not None:
            log.trim(now, window_seconds(key))
            if not log.entries:
                del self._coins[key]
            else:
                self._schedule(key, log.newest + window_seconds(key))
        record = self._records.get(key)
        if record is not None:
            expires_at = _expires_at(record)
            if expires_at <= now:
                del self._records[key]
            else:
                self._schedule(key, expires_at)


def _replay(record: _Record, claim: IdempotencyClaim, now: float) -> Decision:
    if _fingerprint(record) != claim.fingerprint:
        return Decision(Outcome.KEY_REUSED)
    if isinstance(record, bytes):
        return Decision(Outcome.REPLAY, answer=StoredAnswer.decode(record[_ANSWER_AT:]))
    if now < record.deadline:
        return Decision(Outcome.IN_FLIGHT, record.deadline - now)
    return Decision(Outcome.LOST)
