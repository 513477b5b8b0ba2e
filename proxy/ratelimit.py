"""Rate limits and idempotency: what a store decides, and the keys it decides on.

One ``admit`` call per request makes the whole decision atomically: replay or refuse a used
Idempotency-Key, check every window of the customer and the workspace budget, and only if all
pass spend one unit of each and reserve the key. A request refused for any reason spends
nothing. An admitted request whose upstream call provably never left (the connection failed)
gives everything back with ``release``.

Windows are exact moving windows: a log of the accepted requests' times, trimmed to the
window's limit, so "N/period" never lets N+1 through in any interval of that length and the
Retry-After it gives is the moment the oldest counted request leaves the window.

Stores: ``memory_store.MemoryStore`` (one process) and ``redis_store.RedisStore`` (shared by
replicas; one Lua script, so one round trip, per decision).
"""

from __future__ import annotations

import collections
import enum
import functools
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from .bounded import ExpiringMap
from .errors import Headers
from .settings import Rate

# Windows, claims, stored answers, window states and decisions are made on every request:
# tuples, which cost a third of a frozen dataclass to build.


class Window(NamedTuple):
    key: str
    limit: int
    seconds: int


class IdempotencyClaim(NamedTuple):
    """A client's Idempotency-Key, scoped to its customer and bound to its request."""

    key: str
    fingerprint: bytes  # a digest of what the request would do upstream
    in_flight_seconds: float  # after this an unfinished first call is taken as lost
    ttl_seconds: int


class StoredAnswer(NamedTuple):
    status: int
    body: bytes

    def encode(self) -> bytes:
        return b"%d:%b" % (self.status, self.body)

    @classmethod
    def decode(cls, blob: bytes) -> StoredAnswer:
        status, _, body = blob.partition(b":")
        return cls(int(status), body)


class Outcome(enum.StrEnum):  # a str: logs and labels take it as it is
    ADMITTED = "admitted"
    RATE_LIMITED = "rate_limited"  # a customer window is full
    BUDGET_SPENT = "budget_spent"  # the workspace budget is full
    REPLAY = "replay"  # the key's first answer is stored
    IN_FLIGHT = "in_flight"  # the key's first call is running
    KEY_REUSED = "key_reused"  # the key was used for another request
    LOST = "lost"  # the key's first call never finished (its process died)


class WindowState(NamedTuple):
    remaining: int
    reset: float  # seconds until one more request fits


class Decision(NamedTuple):
    outcome: Outcome
    retry_after: float = 0.0
    windows: tuple[WindowState, ...] = ()  # the customer windows, in the order asked
    answer: StoredAnswer | None = None
    ticket: float | str | None = None  # names what an admitted request spent, for release()


class LimitStore(Protocol):
    # The clock the store's relative times (Retry-After, resets) run on, as this process sees
    # it: what DecisionMemo counts them from.
    clock: Callable[[], float]

    async def admit(
        self, windows: Sequence[Window], budget: Window | None, claim: IdempotencyClaim | None
    ) -> Decision:
        """Decide atomically; raise ``StorageUnavailable`` when the store cannot answer."""

    async def finish(self, claim: IdempotencyClaim, answer: StoredAnswer) -> None:
        """Store the answer produced for a reserved key, replacing the reservation."""

    async def release(
        self,
        windows: Sequence[Window],
        budget: Window | None,
        claim: IdempotencyClaim | None,
        ticket: float | str | None,
    ) -> None:
        """Undo an admitted decision (its ``ticket``) whose call never reached the upstream:
        its entry leaves every window and the budget, and the key's reservation is dropped, so
        a retry is a fresh attempt."""

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the store answers."""

    async def aclose(self) -> None: ...


def _digest(*parts: str) -> bytes:
    # 96 bits: collisions between customers or keys are out of reach, and a million keys in
    # the memory store are a few megabytes smaller than with 128.
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=12).digest()


@functools.lru_cache(maxsize=4096)
def customer_windows(trigger_id: str, scope: str, rates: tuple[Rate, ...]) -> tuple[Window, ...]:
    """The windows of one customer on one trigger, keyed by the trigger's id (never its alias
    or the route), so every way of calling a trigger shares one quota. Cached: a customer's
    requests come in runs, and the keys are a hash."""
    subject = _digest(trigger_id, scope).hex()
    return tuple(Window(f"c:{r.seconds}:{subject}", r.limit, r.seconds) for r in rates)


# A remembered refusal stops this much before its window frees and the store decides again:
# the store's clock ran that far ahead of the moment its answer arrived (a Redis reply).
REFUSAL_MARGIN_SECONDS = 0.05
# A remembered replay is kept this long at most: its stored answer expires in the store, which
# the memo does not see.
REPLAY_MEMO_SECONDS = 1.0


class OverQuota:
    """The rate-limit headers, Retry-After included, of a customer over quota from now until
    the full window frees. The window shown (the most restrictive) stays the same meanwhile,
    so only the seconds change: the headers are rebuilt when they do, not on every request."""

    __slots__ = (
        "_headers",
        "_policy",
        "_remaining",
        "_reset_at",
        "_retry_at",
        "_seconds",
        "_window",
    )

    def __init__(
        self, now: float, decision: Decision, windows: Sequence[Window], policy: bytes
    ) -> None:
        i = most_restrictive(decision.windows)
        self._window = windows[i]
        self._remaining = decision.windows[i].remaining
        self._reset_at = now + decision.windows[i].reset
        self._retry_at = now + decision.retry_after
        self._policy = policy
        self._seconds = (0, 0)
        self._headers: Headers = []

    def headers(self, now: float) -> Headers:
        """The headers as the store's decision would give them at ``now`` (never early). The
        list is shared by the requests of one second: it is copied, never changed."""
        seconds = (
            max(1, math.ceil(self._retry_at - now)),
            max(0, math.ceil(self._reset_at - now)),
        )
        if seconds != self._seconds:
            retry, reset = self._seconds = seconds
            self._headers = [
                *window_headers(self._window, self._remaining, reset, self._policy),
                (b"retry-after", b"%d" % retry),
            ]
        return self._headers


class Repeat(NamedTuple):
    """A remembered decision (``DecisionMemo``) with what it is answered with: a stored
    answer to replay, or a customer over quota."""

    trigger: str  # the trigger's label, for the access line
    source: str
    answer: StoredAnswer | None  # a replay's stored answer
    over_quota: OverQuota | None  # a refusal's headers


class DecisionMemo(ExpiringMap[object, Repeat]):
    """The last few thousand repeatable decisions of exact repeats of a request.

    Customers spinning past their quota and widgets retrying a paid spin send the same request
    again and again, and its decision cannot change meanwhile. A customer over quota stays over
    it until the full window frees: no request of theirs on that trigger is admitted before
    then (by any replica), and counted requests leave a window only by age; the rate-limit
    fields shown are those of that window, which are the same whenever they are computed. A
    stored answer is never replaced, only expired (so a replay is kept REPLAY_MEMO_SECONDS at
    most). Remembering the decision skips the trigger lookup, the windows and the store (a
    Redis round trip); the answer is rebuilt with its seconds counted from now. The session is
    checked on every request before the memo is asked.

    ``clock`` must be the one the store's relative times run on (the memory store's own
    clock; any steady clock for Redis).
    """

    def __init__(self, clock: Callable[[], float], *, size: int = 4096) -> None:
        super().__init__(size, clock)


def budget_window(rate: Rate) -> Window:
    return Window(f"b:{rate.seconds}", rate.limit, rate.seconds)


class FailureLimit:
    """A per-address limit on failed session checks, kept in the process.

    An exact moving window like the stores' (the times of the counted failures, at most
    ``limit`` of them, oldest first), without their generality: a flood of forged tokens costs
    a dict lookup and a deque append each, and never reaches a shared store. Bounded: at
    ``max_addresses`` it forgets addresses whose windows have emptied (at most once a second);
    if none have, a new address is not counted.
    """

    def __init__(
        self, rate: Rate, *, max_addresses: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._limit = rate.limit
        self._seconds = rate.seconds
        self._max = max_addresses
        self._clock = clock
        self._times: dict[str, collections.deque[float]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._times)

    def hit(self, address: str) -> float:
        """Count one failure from ``address``: 0.0 if it is within the limit, else the seconds
        until one more would be (the failure is then not counted)."""
        now = self._clock()
        times = self._times.get(address)
        if times is None:
            if len(self._times) >= self._max and not self._sweep(now):
                return 0.0
            times = self._times[address] = collections.deque()
        start = now - self._seconds
        while times and times[0] <= start:
            times.popleft()
        if len(times) >= self._limit:
            return times[0] - start
        times.append(now)
        return 0.0

    def _sweep(self, now: float) -> bool:
        """Drop the addresses with nothing left in their window; True if any room was made."""
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            start = now - self._seconds
            for address in [a for a, t in self._times.items() if not t or t[-1] <= start]:
                del self._times[address]
        return len(self._times) < self._max


def window_seconds(key: str) -> int:
    """The length of the window a key names (every window key is ``kind:seconds:...``)."""
    return int(key.split(":", 2)[1])


def idempotency_claim(
    scope: str,
    header: str,
    *,
    trigger_id: str,
    source: str,
    body: bytes,
    in_flight_seconds: float,
    ttl_seconds: int,
) -> IdempotencyClaim:
    """Scope the key to the customer and bind it to what the request would do upstream."""
    return IdempotencyClaim(
        key=f"i:{_digest(scope, header).hex()}",
        fingerprint=_digest(trigger_id, source, body.decode()),
        in_flight_seconds=in_flight_seconds,
        ttl_seconds=ttl_seconds,
    )


@functools.lru_cache(maxsize=64)
def window_name(seconds: int) -> bytes:
    """A window's name in the RateLimit fields: "1m", "1d", "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}".encode()
    return f"{seconds}s".encode()


def rate_policy(rates: Sequence[Rate]) -> bytes:
    """The RateLimit-Policy field of a set of windows; computed once per trigger."""
    return b", ".join(
        b'"%b";q=%d;w=%d' % (window_name(r.seconds), r.limit, r.seconds) for r in rates
    )


def most_restrictive(states: Sequence[WindowState]) -> int:
    """The position of the window whose rate-limit fields are shown: fewest requests left,
    and of those the one that frees last."""
    if len(states) == 1:
        return 0
    return min(range(len(states)), key=lambda i: (states[i].remaining, -states[i].reset))


def window_headers(window: Window, remaining: int, reset: int, policy: bytes) -> Headers:
    """One window's rate-limit headers: the legacy RateLimit-Limit, -Remaining and -Reset, and
    the IETF draft's RateLimit-Policy (``policy``: ``rate_policy`` of the trigger's windows)
    and RateLimit fields."""
    return [
        (b"ratelimit-limit", b"%d" % window.limit),
        (b"ratelimit-remaining", b"%d" % remaining),
        (b"ratelimit-reset", b"%d" % reset),
        (b"ratelimit-policy", policy),
        (b"ratelimit", b'"%b";r=%d;t=%d' % (window_name(window.seconds), remaining, reset)),
    ]


def quota_headers(
    windows: Sequence[Window], states: Sequence[WindowState], policy: bytes
) -> Headers:
    """Rate-limit headers for the most restrictive window (``window_headers``)."""
    if not windows or len(windows) != len(states):
        return []
    i = most_restrictive(states)
    state = states[i]
    return window_headers(windows[i], state.remaining, max(0, math.ceil(state.reset)), policy)
