"""Bounded maps: the proxy's caches are plain dicts that forget their oldest entries."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def drop_oldest(entries: dict[K, V], size: int) -> None:
    """Make room in ``entries``, a map bounded at ``size``, by deleting its oldest-inserted
    eighth (at least one).

    In batches, because a dict leaves a hole where a key was deleted and iterating walks over
    the holes at its front until the dict is rebuilt: deleting the first key one insert at a
    time would walk over every earlier deletion on every insert.
    """
    for key in list(itertools.islice(entries, max(1, size // 8))):
        del entries[key]


class ExpiringMap(Generic[K, V]):
    """A map bounded at ``size`` whose entries each hold until a moment on ``clock``.

    An expired entry is gone once asked for. At the bound the expired entries go first, then
    the oldest eighth (``drop_oldest``).
    """

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self._size = size
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock() >= entry[0]:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, until: float, value: V) -> None:
        entries = self._entries
        if len(entries) >= self._size and key not in entries:
            now = self.clock()
            for stale in [k for k, (at, _) in entries.items() if at <= now]:
                del entries[stale]
            if len(entries) >= self._size:
                drop_oldest(entries, self._size)
        entries[key] = (until, value)
