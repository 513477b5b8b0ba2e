"""The cache of workspace-wide reads: shared by every customer, one upstream call per key.

An answer is fresh for ``reads.cache_seconds``; after that, for ``reads.stale_seconds`` more,
it is served while one refresh runs (stale-while-revalidate, RFC 5861) and stands in when the
refresh fails or the reads budget is spent. Concurrent misses for one key join one fill
(``SingleFlight``), so a thousand page views arriving at once make one call to Nector.

Each process keeps the answers it has seen (bounded, ``reads.max_cached``). With a Redis store
the replicas also share them (``RedisBlobs``): a fill first looks in Redis, and takes a short
lock there so that only one replica calls Nector for a key; the others wait for its answer
(or serve what they have). Freshness is a wall-clock moment, the same on every replica.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, NamedTuple, TypeVar

from proxy.limits.bounded import ExpiringMap
from proxy.limits.stores import Blobs
from proxy.observe.logs import LOG

T = TypeVar("T")
# Statuses worth keeping: an answer, or Nector's "no such offer" (else every lookup of a made-up
# id would reach Nector).
CACHED_STATUSES = frozenset([200, 404])
# How often a replica waiting for another's fill looks for its answer.
POLL_SECONDS = 0.05


class Entry(NamedTuple):
    status: int
    body: bytes
    fresh_until: float  # wall-clock seconds

    def encode(self) -> bytes:
        return b"%d:%d:%b" % (round(self.fresh_until * 1000), self.status, self.body)

    @classmethod
    def decode(cls, blob: bytes) -> Entry:
        fresh, status, body = blob.split(b":", 2)
        return cls(int(status), body, int(fresh) / 1000)


def answer_headers(
    entry: Entry, state: tuple[bytes, bytes], now: float, max_age: int, shared: bool
) -> list[tuple[bytes, bytes]]:
    """A cached answer's headers: a browser may keep it while it stays fresh here, a shared
    cache only if it was asked for with no session (``shared``); ``state`` is its X-Cache, and
    a stale one says its ``Age``. Every copy varies on Origin (its CORS headers do)."""
    left = math.floor(entry.fresh_until - now)
    scope = b"public" if shared else b"private"
    control = b"%b, max-age=%d" % (scope, min(max_age, max(0, left)))
    headers = [(b"cache-control", control), (b"vary", b"Origin"), state]
    if state[1] == b"STALE":
        headers.append((b"age", b"%d" % max(0, math.floor(now - entry.fresh_until + max_age))))
    return headers


class SingleFlight(Generic[T]):
    """Concurrent calls for one key share one run of the work. The work runs in its own task:
    a caller that goes away (its client disconnected) does not cancel it for the others."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}

    def running(self, key: str) -> bool:
        return key in self._running

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ReadCache:
    """Workspace-wide answers by key (the read's normal-form target, ``reads.Read.target``)."""

    def __init__(
        self,
        *,
        fresh_seconds: float,
        stale_seconds: float,
        size: int,
        blobs: Blobs | None = None,
        wait_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fresh = fresh_seconds
        self._stale = stale_seconds
        self._entries: ExpiringMap[str, Entry] = ExpiringMap(size, clock)
        self._blobs = blobs
        self._wait = wait_seconds  # the longest a fill waits for another replica's
        self.clock = clock
        self._flights: SingleFlight[Entry] = SingleFlight()
        self._refreshes: set[asyncio.Task[None]] = set()

    def get(self, key: str) -> Entry | None:
        """What this process holds for ``key``, fresh or stale."""
        return self._entries.get(key)

    def fresh(self, entry: Entry) -> bool:
        return self.clock() < entry.fresh_until

    async def fill(self, key: str, fetch: Callable[[], Awaitable[tuple[int, bytes]]]) -> Entry:
        """The answer for ``key`` after at most one call of ``fetch`` among every concurrent
        caller (and every replica sharing the blobs). ``fetch`` raises to refuse or fail."""
        return await self._flights.run(key, lambda: self._fill(key, fetch))

    def refresh(self, key: str, fetch: Callable[[], Awaitable[tuple[int, bytes]]]) -> None:
        """Start refreshing a stale ``key`` in the background, unless a refresh runs already."""
        if self._flights.running(key):
            return

        async def refreshing() -> None:
            try:
                await self.fill(key, fetch)
            except Exception as exc:  # the stale answer keeps standing in
                LOG.info("a stale read could not be refreshed (%s)", type(exc).__name__)

        task = asyncio.ensure_future(refreshing())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def aclose(self) -> None:
        for task in self._refreshes:
            task.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)
        await self._flights.aclose()

    async def _fill(self, key: str, fetch: Callable[[], Awaitable[tuple[int, bytes]]]) -> Entry:
        blobs = self._blobs
        if blobs is None:
            return self._keep(key, *(await fetch()))
        shared = await self._shared(key)
        if shared is not None:
            return shared
        lock_seconds = self._wait
        deadline = self.clock() + self._wait
        while not await blobs.lock(key, lock_seconds):
            # Another replica is calling Nector for this key: its answer will be in Redis.
            if self.clock() >= deadline:
                break  # it died or hangs; ask Nector ourselves
            await asyncio.sleep(POLL_SECONDS)
            shared = await self._shared(key)
            if shared is not None:
                return shared
        try:
            entry = self._keep(key, *(await fetch()))
            if entry.status in CACHED_STATUSES:
                await blobs.put(key, entry.encode(), self._fresh + self._stale)
            return entry
        finally:
            await blobs.unlock(key)

    async def _shared(self, key: str) -> Entry | None:
        """A fresh answer another replica stored, now kept here too."""
        assert self._blobs is not None
        blob = await self._blobs.get(key)
        if blob is None:
            return None
        entry = Entry.decode(blob)
        if not self.fresh(entry):
            return None
        self._entries.put(key, entry.fresh_until + self._stale, entry)
        return entry

    def _keep(self, key: str, status: int, body: bytes) -> Entry:
        entry = Entry(status, body, self.clock() + self._fresh)
        if status in CACHED_STATUSES:
            self._entries.put(key, entry.fresh_until + self._stale, entry)
        return entry
