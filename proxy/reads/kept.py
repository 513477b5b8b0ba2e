"""A customer's own answers, kept for that customer alone (``reads.customer_cache_seconds``).

A signed-in page view reads the customer's lead, history and coupons; Nector's 60 calls a
minute cannot pay for each, so an answer is kept under the session's own customer and the
read's upstream target, and is served to no one else (the key holds the customer, and every
target a read builds names the session's own lead or customer). It is fresh for
``reads.customer_cache_seconds``; after that, for ``reads.stale_seconds`` more, it stands in
when a new one cannot be fetched. A reward through the proxy drops every answer of that
customer (``forget``), so the balance after a spin is read fresh.

One process keeps them in a map bounded in bytes (``reads.max_kept_megabytes``) that forgets its
least recently written customers first. With a Redis store the replicas share them instead, one
hash per customer (``limits.redis_blobs``), so that a reward through any replica drops them for
all; Redis then holds them alone, and every replica sees the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from proxy.errors import ProxyError, StorageUnavailable
from proxy.limits.stores import CustomerBlobs
from proxy.observe.logs import LOG, AccessRecord
from proxy.reads.cache import SingleFlight

KEPT_STATUSES = frozenset([200, 404])  # an answer, or Nector's "no such customer"
MAX_KEPT_BODY = 128 * 1024  # a larger answer is served, not kept
# What Python spends beside the body and the key: the tuple, its numbers, the dict slots.
ENTRY_COST = 300
CUSTOMER_COST = 400
HIT, MISS, STALE = ((b"x-cache", state) for state in (b"HIT", b"MISS", b"STALE"))
Own = tuple[int, bytes, list[tuple[bytes, bytes]]]  # a customer's own answer: status, body, headers


class KeptAnswer(NamedTuple):
    status: int
    body: bytes
    fetched_at: float  # wall-clock seconds

    def encode(self) -> bytes:
        return b"%d:%d:%b" % (round(self.fetched_at * 1000), self.status, self.body)

    @classmethod
    def decode(cls, blob: bytes) -> KeptAnswer:
        fetched, status, body = blob.split(b":", 2)
        return cls(int(status), body, int(fetched) / 1000)


class CustomerMap:
    """Answers by customer, then by target, bounded at ``max_bytes`` (an estimate of what
    Python holds for them). Over the bound, the customers written longest ago are dropped,
    an eighth of the bound at a time (``limits.bounded.drop_oldest`` says why in batches)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._customers: dict[str, dict[str, KeptAnswer]] = {}
        self._costs: dict[str, int] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._customers)

    def get(self, customer: str, target: str) -> KeptAnswer | None:
        answers = self._customers.get(customer)
        return None if answers is None else answers.get(target)

    def put(self, customer: str, target: str, answer: KeptAnswer) -> None:
        answers = self._customers.pop(customer, None) or {}  # written now: last in the order
        before = self._costs.pop(customer, 0)
        cost = before or CUSTOMER_COST
        old = answers.pop(target, None)
        if old is not None:
            cost -= len(old.body) + len(target) + ENTRY_COST
        answers[target] = answer
        cost += len(answer.body) + len(target) + ENTRY_COST
        self._customers[customer] = answers
        self._costs[customer] = cost
        self.bytes += cost - before
        if self.bytes > self._max:
            self._shrink()

    def forget(self, customer: str) -> None:
        if self._customers.pop(customer, None) is not None:
            self.bytes -= self._costs.pop(customer)

    def _shrink(self) -> None:
        goal = self._max - self._max // 8
        oldest = []
        for customer in self._customers:
            if self.bytes <= goal:
                break
            self.bytes -= self._costs[customer]
            oldest.append(customer)
        for customer in oldest:
            del self._customers[customer]
            del self._costs[customer]


class Kept:
    """``reads.customer_cache_seconds``: the kept answers of every customer."""

    def __init__(
        self,
        *,
        fresh_seconds: float,
        stale_seconds: float,
        max_bytes: int,
        blobs: CustomerBlobs | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fresh = fresh_seconds
        self._stale = stale_seconds
        self._map = CustomerMap(max_bytes)
        self._blobs = blobs
        self.clock = clock
        self._flights: SingleFlight[Own] = SingleFlight()

    async def serve(
        self, customer: str, key: str, call: Callable[[], Awaitable[Own]], record: AccessRecord
    ) -> Own:
        """The customer's answer for ``key``: the kept one while fresh; else one ``call``,
        shared by concurrent ones of the same customer and key (a widget and its page both
        reading the lead, say), and kept; failing that (the slice or budget spent, Nector
        failing: not the customer's own limit), the kept one, stale. Headers say which."""
        kept = await self.get(customer, key)
        if kept is not None and self.fresh(kept):
            record.decision = "cached"
            return kept.status, kept.body, [HIT]

        async def fetch() -> Own:
            status, body, headers = await call()
            await self.keep(customer, key, status, body)
            return status, body, [*headers, MISS]

        try:
            return await self._flights.run(f"{customer}\x00{key}", fetch)
        except ProxyError as exc:
            if kept is None or exc.status < 500:
                raise  # no copy, or a 429 that is the customer's own to wait out
            record.decision = "stale"
            return kept.status, kept.body, [STALE, (b"age", b"%d" % self.age(kept))]

    async def aclose(self) -> None:
        await self._flights.aclose()

    async def get(self, customer: str, target: str) -> KeptAnswer | None:
        """The customer's last answer for ``target``, fresh or stale; None past both."""
        blobs = self._blobs
        if blobs is None:
            kept = self._map.get(customer, target)
        else:
            try:
                blob = await blobs.get(customer, target)
            except StorageUnavailable:
                return None  # Nector is asked, as with no copy
            kept = None if blob is None else KeptAnswer.decode(blob)
        if kept is None or self.clock() >= kept.fetched_at + self._fresh + self._stale:
            return None
        return kept

    def fresh(self, kept: KeptAnswer) -> bool:
        return self.clock() < kept.fetched_at + self._fresh

    def age(self, kept: KeptAnswer) -> int:
        return max(0, math.floor(self.clock() - kept.fetched_at))

    async def keep(self, customer: str, target: str, status: int, body: bytes) -> None:
        if status not in KEPT_STATUSES or len(body) > MAX_KEPT_BODY:
            return
        if not self._fresh and not self._stale:
            return
        kept = KeptAnswer(status, body, self.clock())
        blobs = self._blobs
        if blobs is None:
            self._map.put(customer, target, kept)
            return
        try:
            await blobs.put(customer, target, kept.encode(), self._fresh + self._stale)
        except StorageUnavailable:
            LOG.info("a customer's answer could not be kept: the limit store is unavailable")

    async def forget(self, customer: str) -> None:
        """Drop every answer kept for ``customer`` (after their reward): never raises, since
        the reward it follows has been paid."""
        self._map.forget(customer)
        blobs = self._blobs
        if blobs is None:
            return
        try:
            await blobs.forget(customer)
        except StorageUnavailable:
            LOG.warning("a rewarded customer's kept answers could not be dropped")
