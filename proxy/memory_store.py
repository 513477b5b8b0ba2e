"""The in-process limit store (``memory://``): one process only, bounded.

Every decision runs without an ``await`` between its read and its write, so on one event loop
it is atomic. Expired entries are swept at most once a second from a heap ordered by expiry.
The store holds at most ``max_keys`` live entries; at the bound a request that would add one is
refused with ``StorageUnavailable`` rather than evicting anything: dropping a window would hand a
customer fresh quota, dropping an idempotency record could pay a retry twice.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Callable, Sequence

from .errors import StorageUnavailable
from .ratelimit import (
    Decision,
    IdempotencyClaim,
    Outcome,
    StoredAnswer,
    Window,
    WindowState,
)

SWEEP_INTERVAL = 1.0


class _Log:
    """Accepted requests' times in one window, oldest first, at most ``limit`` of them."""

    __slots__ = ("seconds", "stamps")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.stamps: list[float] = []

    def expires_at(self) -> float:
        return self.stamps[-1] + self.seconds if self.stamps else 0.0


class _Record:
    __slots__ = ("answer", "deadline", "expires_at", "fingerprint")

    def __init__(self, fingerprint: str, deadline: float, expires_at: float) -> None:
        self.fingerprint = fingerprint
        self.deadline = deadline
        self.expires_at = expires_at
        self.answer: StoredAnswer | None = None


def _state(log: _Log | None, limit: int, seconds: int, now: float) -> tuple[int, float, float]:
    """(requests counted in the window, seconds until the window has room, oldest counted).

    O(log n): the log is sorted, so the window's start is found by bisection.
    """
    if log is None:
        return 0, 0.0, now
    stamps = log.stamps
    first = bisect.bisect_right(stamps, now - seconds)
    count = len(stamps) - first
    if count == 0:
        return 0, 0.0, now
    wait = stamps[-limit] + seconds - now if count >= limit else 0.0
    return count, wait, stamps[first]


class MemoryStore:
    def __init__(self, *, max_keys: int = 1_000_000, clock: Callable[[], float] = time.time):
        self._max_keys = max_keys
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._records: dict[str, _Record] = {}
        self._expiry: list[tuple[float, str]] = []
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._logs) + len(self._records)

    async def admit(
        self, windows: Sequence[Window], budget: Window | None, claim: IdempotencyClaim | None
    ) -> Decision:
        now = self._clock()
        self._sweep(now)
        if claim is not None:
            record = self._records.get(claim.key)
            if record is not None and record.expires_at > now:
                return _replay(record, claim, now)
        states = []
        customer_wait = 0.0
        for w in windows:
            count, wait, oldest = _state(self._logs.get(w.key), w.limit, w.seconds, now)
            customer_wait = max(customer_wait, wait)
            states.append((count, wait, oldest))
        if customer_wait > 0:
            shown = tuple(
                WindowState(max(0, w.limit - c), wait or oldest + w.seconds - now)
                for w, (c, wait, oldest) in zip(windows, states, strict=True)
            )
            return Decision(Outcome.RATE_LIMITED, customer_wait, shown)
        if budget is not None:
            _, wait, _ = _state(self._logs.get(budget.key), budget.limit, budget.seconds, now)
            if wait > 0:
                return Decision(Outcome.BUDGET_SPENT, wait)
        spend = [*windows, budget] if budget is not None else list(windows)
        self._make_room(now, [w.key for w in spend if w.key not in self._logs], claim)
        for w in spend:
            self._spend(w, now)
        if claim is not None:
            self._reserve(claim, now)
        shown = tuple(
            WindowState(w.limit - c - 1, oldest + w.seconds - now)
            for w, (c, _, oldest) in zip(windows, states, strict=True)
        )
        return Decision(Outcome.ADMITTED, 0.0, shown)

    async def finish(self, claim: IdempotencyClaim, answer: StoredAnswer) -> None:
        record = self._records.get(claim.key)
        if record is None or record.fingerprint != claim.fingerprint:
            return
        record.answer = answer
        record.expires_at = self._clock() + claim.ttl_seconds
        heapq.heappush(self._expiry, (record.expires_at, claim.key))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _spend(self, w: Window, now: float) -> None:
        log = self._logs.get(w.key)
        if log is None:
            log = self._logs[w.key] = _Log(w.seconds)
            # One heap entry per key, not per request: the sweep re-schedules a live key.
            heapq.heappush(self._expiry, (now + w.seconds, w.key))
        stamps = log.stamps
        stamps.append(now)
        # Keep at most `limit` entries; drop expired ones only once they are half the list, so
        # the cost of deleting from the front stays O(1) per request, amortized.
        excess = len(stamps) - w.limit
        if excess > 0:
            del stamps[:excess]
        expired = bisect.bisect_right(stamps, now - w.seconds)
        if expired * 2 > len(stamps):
            del stamps[:expired]

    def _reserve(self, claim: IdempotencyClaim, now: float) -> None:
        expires_at = now + claim.ttl_seconds
        self._records[claim.key] = _Record(
            claim.fingerprint, now + claim.in_flight_seconds, expires_at
        )
        heapq.heappush(self._expiry, (expires_at, claim.key))

    def _make_room(self, now: float, new_keys: list[str], claim: IdempotencyClaim | None) -> None:
        needed = len(new_keys) + (claim is not None and claim.key not in self._records)
        if len(self) + needed <= self._max_keys:
            return
        self._sweep(now, force=True)
        if len(self) + needed > self._max_keys:
            raise StorageUnavailable("the limit store is full")

    def _sweep(self, now: float, *, force: bool = False) -> None:
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            log = self._logs.get(key)
            if log is not None:
                if log.expires_at() <= now:
                    del self._logs[key]
                else:
                    heapq.heappush(heap, (log.expires_at(), key))
            record = self._records.get(key)
            if record is not None and record.expires_at <= now:
                del self._records[key]


def _replay(record: _Record, claim: IdempotencyClaim, now: float) -> Decision:
    if record.fingerprint != claim.fingerprint:
        return Decision(Outcome.KEY_REUSED)
    if record.answer is not None:
        return Decision(Outcome.REPLAY, answer=record.answer)
    if now < record.deadline:
        return Decision(Outcome.IN_FLIGHT, record.deadline - now)
    return Decision(Outcome.LOST)
