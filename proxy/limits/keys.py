"""The keys limits and idempotency are decided on, all derived from verified data.

A customer's windows are keyed by the trigger's id (never its alias or the route) and the
verified session's subject, hashed; the workspace budget has one key; an Idempotency-Key is
scoped to the customer and bound to what the request would do upstream. Every window key is
``kind:seconds:...``, so its length can be read back from it.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

from proxy.config.settings import Rate
from proxy.errors import InvalidBody


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


# 96 bits: collisions between customers or keys are out of reach, and a million keys in the
# memory store are a few megabytes smaller than with 128.
DIGEST_BYTES = 12


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=DIGEST_BYTES).digest()


@functools.lru_cache(maxsize=4096)
def customer_windows(trigger_id: str, scope: str, rates: tuple[Rate, ...]) -> tuple[Window, ...]:
    """The windows of one customer on one trigger, keyed by the trigger's id (never its alias
    or the route), so every way of calling a trigger shares one quota. Cached: a customer's
    requests come in runs, and the keys are a hash."""
    subject = _digest(trigger_id, scope).hex()
    return tuple(Window(f"c:{r.seconds}:{subject}", r.limit, r.seconds) for r in rates)


def budget_window(rate: Rate) -> Window:
    return Window(f"b:{rate.seconds}", rate.limit, rate.seconds)


def compact(key: str) -> bytes:
    """A key as the memory store holds it: one that ends in a digest (a customer's window, an
    idempotency record) keeps it as its raw bytes, 12 where the hex took 24."""
    head, colon, tail = key.rpartition(":")
    if colon and len(tail) == 2 * DIGEST_BYTES:
        try:
            return b"%b:%b" % (head.encode(), bytes.fromhex(tail))
        except ValueError:
            pass
    return key.encode()


def window_seconds(key: bytes) -> int:
    """The length of the window a compact key names (every window key is ``kind:seconds:...``)."""
    return int(key.split(b":", 2)[1])


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
    """Scope the key to the customer and bind it to what the request would do upstream.
    Raises ``InvalidBody`` for a header that is no valid key."""
    if not 1 <= len(header) <= 255 or not header.isascii() or not header.isprintable():
        raise InvalidBody("Idempotency-Key must be 1-255 printable ASCII characters")
    return IdempotencyClaim(
        key=f"i:{_digest(scope, header).hex()}",
        fingerprint=_digest(trigger_id, source, body.decode()),
        in_flight_seconds=in_flight_seconds,
        ttl_seconds=ttl_seconds,
    )
