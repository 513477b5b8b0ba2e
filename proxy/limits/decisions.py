"""Rate limits and idempotency: what a limit store decides, and its interface.

One ``admit`` call per request makes the whole decision atomically: replay or refuse a used
Idempotency-Key, check every window of the customer and the workspace budget, and only if all
pass spend one unit of each and reserve the key. A request refused for any reason spends
nothing. An admitted request whose upstream call provably never left (the connection failed)
gives everything back with ``release``.

Coin budgets (``coins.py``) are windows that count coins: ``admit`` reserves a reward's most
coins in them with everything else, ``settle`` sets the reservation to what was paid.

Windows are exact moving windows: a log of the accepted requests' times, trimmed to the
window's limit, so "N/period" never lets N+1 through in any interval of that length and the
Retry-After it gives is the moment the oldest counted request leaves the window. The keys are
``keys.py``'s; rendering a decision as headers is the HTTP layer's (``http.responses``).

Stores: ``memory_store.MemoryStore`` (one process) and ``redis_store.RedisStore`` (shared by
replicas; one Lua script, so one round trip, per decision).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from proxy.limits.coins import CoinWindow
from proxy.limits.keys import IdempotencyClaim, Window

# Decisions and their parts are made on every request: tuples, cheaper to build than frozen
# dataclasses.


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
    COINS_SPENT = "coin_budget_spent"  # a coin budget has no room for the reward's most
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
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        coins: Sequence[CoinWindow] = (),
    ) -> Decision:
        """Decide atomically; raise ``StorageUnavailable`` when the store cannot answer.
        ``windows`` are the customer's (full: RATE_LIMITED), ``budgets`` the workspace's
        (full: BUDGET_SPENT): the whole budget, and for reads also their slice of it;
        ``coins`` the coin budgets (no room for their reservation: COINS_SPENT)."""

    async def recall(self, claim: IdempotencyClaim) -> Decision | None:
        """What ``admit`` would answer for an Idempotency-Key already used (replay, in flight,
        reused, lost), or None for a fresh one; nothing is spent or reserved."""

    async def settle(
        self, coins: Sequence[CoinWindow], ticket: float | str | None, paid: int
    ) -> None:
        """Set an admitted request's coin reservations (its ``ticket``) to ``paid`` coins."""

    async def finish(self, claim: IdempotencyClaim, answer: StoredAnswer) -> None:
        """Store the answer produced for a reserved key, replacing the reservation."""

    async def release(
        self,
        windows: Sequence[Window],
        budgets: Sequence[Window],
        claim: IdempotencyClaim | None,
        ticket: float | str | None,
        coins: Sequence[CoinWindow] = (),
    ) -> None:
        """Undo an admitted decision (its ``ticket``) whose call never reached the upstream:
        its entry leaves every window and the budget, and the key's reservation is dropped, so
        a retry is a fresh attempt."""

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the store answers."""

    async def aclose(self) -> None: ...


# A remembered refusal stops this much before its window frees and the store decides again:
# the store's clock ran that far ahead of the moment its answer arrived (a Redis reply).
REFUSAL_MARGIN_SECONDS = 0.05
