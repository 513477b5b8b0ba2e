"""A load test in CI: 2,000 reward requests at concurrency 50 from 200 customers through a real
``serve`` process to the Nector stand-in, a tenth of them retried with the same key. No 5xx,
every upstream call is one success, none doubled; p50/p99 are reported."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import SPIN, token, tried
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.slow

REQUESTS, CONCURRENCY, CUSTOMERS = 2000, 50, 200


@pytest.mark.load
def test_load(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        config = proxy_config(
            nector.url,
            limits={"per_customer": "1000/minute", "upstream": "100000/minute"},
            triggers=[{"id": SPIN, "name": "spin-wheel"}],
            logging={"level": "warning"},
        )
        with ProxyProcess(tmp_path, config) as proxy:
            results = asyncio.run(drive(proxy.base_url))
        calls = len(nector.stand_in.calls)
    statuses = [status for status, _, _ in results]
    fresh = sum(1 for status, replayed, _ in results if status == 200 and not replayed)
    replays = sum(1 for _, replayed, _ in results if replayed)
    latencies = sorted(elapsed for _, _, elapsed in results)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    summary = (
        f"{len(results)} requests, {fresh} rewarded, {replays} replayed, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print(summary)
    tried("load", summary)
    assert not [s for s in statuses if s >= 500]
    assert set(statuses) <= {200, 409}  # 409: a retry that overtook its first attempt
    assert calls == fresh  # every upstream call is one success, and no success is doubled
    assert fresh == REQUESTS - len([1 for i in range(REQUESTS) if i % 10 == 9])


async def drive(base: str) -> list[tuple[int, bool, float]]:
    tokens = [token(f"load-customer-{i:04}") for i in range(CUSTOMERS)]
    limit = asyncio.Semaphore(CONCURRENCY)
    results: list[tuple[int, bool, float]] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(i: int) -> None:
            # Every tenth request retries the previous one's key: it must replay, not pay.
            key = f"load-{i - 1 if i % 10 == 9 else i}"
            headers = {"authorization": f"Bearer {tokens[(i - (i % 10 == 9)) % CUSTOMERS]}",
                       "idempotency-key": key}  # fmt: skip
            async with limit:
                started = time.perf_counter()
                response = await client.post("/v1/triggers/spin-wheel", headers=headers)
                elapsed = time.perf_counter() - started
            replayed = response.headers.get("idempotent-replayed") == "true"
            results.append((response.status_code, replayed, elapsed))

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    return results
