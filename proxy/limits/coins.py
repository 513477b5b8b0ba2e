"""Coin budgets: windows that count coins, not requests.

A request that may pay up to ``coins`` (its coin_range's maximum) reserves that many in each of
its coin windows, atomically with its other windows (``LimitStore.admit``); once Nector answers
it is settled to what the answer reports (``settle``), and released when the call provably
never reached Nector (``release``). A window admits a reservation only while the coins counted
in its last ``seconds`` plus the reservation stay within ``limit``, so replicas sharing a store
never give out more than the budget. When the reservation does not fit, the wait is until
enough of the oldest entries have left the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from proxy.config.settings import Rate
from proxy.limits.keys import customer_windows


class CoinWindow(NamedTuple):
    key: str  # "k:<seconds>:..." (the campaign's) or "kc:<seconds>:..." (one customer's)
    limit: int  # coins in any interval of ``seconds``
    seconds: int
    coins: int  # what this request reserves


def coin_windows(
    trigger_id: str,
    scope: str,
    *,
    budget: Rate | None,
    per_customer: Rate | None,
    reserve: int,
) -> tuple[CoinWindow, ...]:
    """The coin windows of one request on one trigger: the campaign's and the customer's."""
    found = []
    if budget is not None:
        found.append(CoinWindow(f"k:{budget.seconds}:{trigger_id}", *budget, reserve))
    if per_customer is not None:
        # The customer's key is derived as their request windows' are (hashed, by trigger id).
        (window,) = customer_windows(trigger_id, scope, (per_customer,))
        found.append(CoinWindow("k" + window.key, *per_customer, reserve))
    return tuple(found)


class CoinLog:
    """One coin window in memory: its entries ``[time, coins, settled]``, oldest first, and
    their total."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: list[list[float]] = []
        self.total = 0

    def trim(self, now: float, seconds: int) -> None:
        entries = self.entries
        gone = 0
        while gone < len(entries) and entries[gone][0] <= now - seconds:
            self.total -= int(entries[gone][1])
            gone += 1
        if gone:
            del entries[:gone]

    def wait(self, now: float, window: CoinWindow) -> float:
        """Seconds until ``window.coins`` more fit (0: now); call after ``trim``."""
        excess = self.total + window.coins - window.limit
        if excess <= 0:
            return 0.0
        for stamp, coins, _ in self.entries:
            excess -= int(coins)
            if excess <= 0:
                return stamp + window.seconds - now
        return float(window.seconds)  # not reached: a reservation never exceeds the limit

    def reserve(self, now: float, coins: int) -> None:
        self.entries.append([now, coins, 0])
        self.total += coins

    def change(self, ticket: float, reserved: int, coins: int | None) -> None:
        """Settle the unsettled entry ``ticket`` reserved to ``coins``; None removes it."""
        entries = self.entries
        # Newest first: a reservation is settled moments after it was made.
        for i in range(len(entries) - 1, -1, -1):
            entry = entries[i]
            if entry[0] < ticket:
                return
            if entry[0] == ticket and not entry[2] and entry[1] == reserved:
                self.total -= reserved
                if coins is None:
                    del entries[i]
                else:
                    entry[1], entry[2] = coins, 1
                    self.total += coins
                return

    @property
    def newest(self) -> float:
        return self.entries[-1][0] if self.entries else 0.0


def coin_wait(logs: Sequence[CoinLog | None], windows: Sequence[CoinWindow], now: float) -> float:
    """The longest wait of ``windows``, whose logs are ``logs`` (0: every one has room),
    trimming each."""
    wait = 0.0
    for log, w in zip(logs, windows, strict=True):
        if log is not None:
            log.trim(now, w.seconds)
            wait = max(wait, log.wait(now, w))
    return wait
