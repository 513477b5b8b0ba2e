"""The benchmark's closed-loop scenarios, driven by an aiohttp client (they count answers, which
wrk cannot do cheaply):

- memory: RSS of one worker after 100,000 distinct customers each with its own idempotency key,
  then after each of them has read their lead (kept for them), then after a flood of 100,000
  distinct forged tokens (it must stay flat); and, in this process by tracemalloc, what the
  memory store holds for each of those customers (``store_bytes``);
- flash crowd: 10,000 customers spin once, as fast as the client can send, against a 50/minute
  budget: exactly 50 reach the upstream, every other answer is 503 upstream_busy with
  Retry-After, no error and no timeout.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import secrets
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.fast_upstream import BODY
from bench.lab import ENV, FEW_READS, SPIN, Lab
from proxy.config.settings import Rate
from proxy.identity.sessions import mint_token
from proxy.limits.decisions import StoredAnswer
from proxy.limits.keys import customer_windows, idempotency_claim
from proxy.limits.memory_store import MemoryStore

JSON = {"Content-Type": "application/json"}


async def _drive(
    url: str, headers: list[dict[str, str]], concurrency: int, method: str = "POST"
) -> tuple[Counter[int], list[float], Counter[str]]:
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    queue = iter(headers)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for h in queue:
                started = time.perf_counter()
                data = b"{}" if method == "POST" else None
                async with session.request(method, url, data=data, headers=h | JSON) as response:
                    body = await response.json(content_type=None)
                    latencies.append(time.perf_counter() - started)
                    statuses[response.status] += 1
                    if response.status >= 400:
                        retry = response.headers.get("Retry-After")
                        codes[
                            f"{body['error']['code']} (Retry-After {'set' if retry else 'MISSING'})"
                        ] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, latencies, codes


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def _tokens(prefix: str, n: int) -> list[str]:
    secret = [ENV["TRIGGER_PROXY_SESSION_SECRETS"]]
    return [mint_token(secret, {"customer_id": f"{prefix}-{i:06}"}) for i in range(n)]


async def _upstream_count(lab: Lab) -> int:
    async with aiohttp.ClientSession() as s, s.get(lab.upstream.url + "/count") as r:
        return int(await r.text())


async def memory_run(customers: int = 100_000, forged: int = 100_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), with_redis=False)
        proxy = lab.proxy("proxy-memory", "memory://")
        lab.start()
        try:
            url = proxy.url + "/v1/triggers/spin-wheel"
            await _drive(url, [{"Authorization": f"Bearer {t}"} for t in _tokens("warm", 100)], 16)
            baseline = proxy.rss_mb()
            headers = [
                {"Authorization": f"Bearer {t}", "Idempotency-Key": f"key-{i}"}
                for i, t in enumerate(_tokens("rss", customers))
            ]
            statuses, _, _ = await _drive(url, headers, 64)
            after_customers = proxy.rss_mb()
            lead = proxy.url + "/api/v2/merchant/leads/me"
            read_statuses, _, _ = await _drive(lead, headers, 64, "GET")
            after_reads = proxy.rss_mb()
            forgeries = (
                f"{secrets.token_urlsafe(30)}.{secrets.token_urlsafe(4)}.x" for _ in range(forged)
            )
            flood = [{"Authorization": f"Bearer {t}"} for t in forgeries]
            flood_statuses, _, _ = await _drive(url, flood, 64)
            after_flood = proxy.rss_mb()
        finally:
            lab.stop()
    return {
        "RSS after start and warm-up (MB)": round(baseline, 1),
        f"RSS after {customers} customers and idempotency keys (MB, target < 120)": round(
            after_customers, 1
        ),
        f"RSS after {customers} customers' kept lead reads (MB, target < 120)": round(
            after_reads, 1
        ),
        "answers to the lead reads": dict(read_statuses),
        f"RSS after {forged} forged tokens (MB, flat)": round(after_flood, 1),
        "answers to the customers": dict(statuses),
        "answers to the forged tokens": dict(flood_statuses),
    }


async def store_bytes(customers: int = 100_000, body: bytes = BODY) -> dict[str, int]:
    """What the memory store holds for each customer of ``memory_run``: a reward's window and its
    stored answer (Nector's ``body``) under an Idempotency-Key, then a read's window. By
    tracemalloc, in this process, with the windows built past their cache (whose state would
    count) so that only the store is, and no workspace budget: its one window is no
    customer's. The store's clock moves a microsecond a call, so that every run fills the
    same expiry buckets (one a second) while each time is a float of its own, as the real
    clock's are."""
    ticks = itertools.count(1_800_000_000.0, 1e-6)
    store = MemoryStore(clock=lambda: next(ticks))
    rate = (Rate(100_000, 60),)
    answer = StoredAnswer(200, body)
    windows = customer_windows.__wrapped__
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(customers):
            scope = f"customer_id:rss-{i:06}"
            claim = idempotency_claim(
                scope,
                f"key-{i}",
                trigger_id=SPIN,
                source="web",
                body=b"{}",
                in_flight_seconds=15,
                ttl_seconds=86_400,
            )
            await store.admit(windows(SPIN, scope, rate), (), claim)
            await store.finish(claim, answer)
        rewarded = tracemalloc.get_traced_memory()[0]
        for i in range(customers):
            await store.admit(windows("reads", f"customer_id:rss-{i:06}", rate), (), None)
        read = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {
        "memory store: bytes a customer, one window and one stored answer": round(
            rewarded / customers
        ),
        "memory store: bytes a customer's read window": round((read - rewarded) / customers),
    }


async def flash_crowd(customers: int = 10_000, budget: str = "50/minute") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), with_redis=False)
        proxy = lab.proxy("proxy-flash", "memory://", budget=budget, reads=FEW_READS)
        lab.start()
        try:
            headers = [{"Authorization": f"Bearer {t}"} for t in _tokens("crowd", customers)]
            started = time.perf_counter()
            statuses, latencies, codes = await _drive(
                proxy.url + "/v1/triggers/spin-wheel", headers, 200
            )
            elapsed = time.perf_counter() - started
            reached = await _upstream_count(lab)
        finally:
            lab.stop()
    return {
        "customers": customers,
        "seconds": round(elapsed, 2),
        "reached the upstream (must equal the budget)": reached,
        "answers": dict(statuses),
        "refusals": dict(codes),
        "p50 ms": round(statistics.median(latencies) * 1000, 1),
        "p99 ms": round(_percentile(latencies, 0.99), 1),
    }
