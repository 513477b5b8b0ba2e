"""The kept answers' map (``proxy.reads.kept``): bounded in bytes however many customers come,
each customer's answers dropped at once, and never one customer's answer under another's key."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc

import pytest

from proxy.reads.kept import CustomerMap, Kept, KeptAnswer
from tests.helpers import Clock, tried

MB = 1024 * 1024


def lead_body(i: int) -> bytes:
    """About what Nector answers for a lead: a kilobyte of JSON."""
    item = {
        "_id": f"{i:024x}",
        "customer_id": f"customer-{i:06d}",
        "name": "Ada Lovelace",
        "email": f"ada{i}@example.com",
        "available": i % 500,
        "tier": {"name": "gold", "multiplier": 1.5},
        "meta": {"note": "x" * 600},
    }
    return json.dumps({"meta": {"status": "success"}, "data": {"item": item}}).encode()


@pytest.mark.slow
def test_a_hundred_thousand_customers_stay_inside_the_bound() -> None:
    # Each with their lead, history and coupons: about 300 MB unbounded. The memory benchmark's
    # target is 120 MB for the whole worker; the map holds what reads.max_kept_megabytes says.
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    held = CustomerMap(32 * MB)
    body = lead_body(0)
    for i in range(100_000):
        customer = f"customer-{i:06d}"
        for route in ("leads/me", "wallettransactions?lead_id=x", "coupons?lead_id=x"):
            held.put(customer, route, KeptAnswer(200, body + b"%d" % i, 0.0))  # its own bytes
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held.bytes <= 32 * MB
    assert traced < 40 * MB, traced / MB
    assert held.get("customer-099999", "leads/me") is not None  # the latest are kept
    assert held.get("customer-000000", "leads/me") is None  # the earliest went first
    tried(
        "kept",
        f"{len(held)} customers held in {traced / MB:.1f} MB traced "
        f"({time.perf_counter() - started:.1f} s)",
    )


def test_the_map_counts_what_it_holds_and_forgets_a_customer_at_once() -> None:
    held = CustomerMap(10 * MB)
    held.put("alice", "leads/me", KeptAnswer(200, b"a" * 100, 0.0))
    held.put("alice", "coupons", KeptAnswer(200, b"b" * 100, 0.0))
    held.put("alice", "leads/me", KeptAnswer(200, b"c" * 50, 0.0))  # replaced, not added
    held.put("bob", "leads/me", KeptAnswer(200, b"d" * 10, 0.0))
    alice_only = held.bytes
    held.forget("bob")
    assert held.bytes < alice_only
    assert held.get("alice", "leads/me") == KeptAnswer(200, b"c" * 50, 0.0)
    assert held.get("bob", "leads/me") is None
    held.forget("alice")
    assert (held.bytes, len(held)) == (0, 0)


async def test_kept_answers_are_fresh_then_stale_then_gone() -> None:
    clock = Clock()
    kept = Kept(fresh_seconds=30, stale_seconds=60, max_bytes=MB, clock=clock)
    await kept.keep("alice", "leads/me", 200, b"{}")
    await kept.keep("alice", "leads/big", 200, b"x" * (256 * 1024))  # too large to keep
    await kept.keep("alice", "leads/broken", 502, b"{}")  # a failure is never kept
    answer = await kept.get("alice", "leads/me")
    assert answer is not None
    assert kept.fresh(answer)
    assert await kept.get("bob", "leads/me") is None
    assert await kept.get("alice", "leads/big") is None
    assert await kept.get("alice", "leads/broken") is None
    clock.now += 31
    assert not kept.fresh(answer)
    assert kept.age(answer) == 31
    assert await kept.get("alice", "leads/me") == answer  # stale, still standing by
    clock.now += 60
    assert await kept.get("alice", "leads/me") is None
