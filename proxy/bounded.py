"""Bounded maps: the proxy's caches are plain dicts that forget their oldest entries."""

from __future__ import annotations

import itertools
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def drop_oldest(entries: dict[K, V], size: int) -> None:
    """Make room in ``entries``, a map bounded at ``size``, by deleting its oldest-inserted
    eighth (at least one).

    In batches, because a dict leaves a hole where a key was deleted and iterating walks over
    the holes at its front until the dict is rebuilt: deleting the first key one insert at a
    time walks over every earlier deletion (6.3 µs an insert at 4,096 keys, against 0.44 µs
    an eighth at a time, in one process).
    """
    for key in list(itertools.islice(entries, max(1, size // 8))):
        del entries[key]
