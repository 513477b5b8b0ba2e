"""The storefront: signed-in shoppers browsing while they spin, replayed in compressed time.

Each of ``customers`` shoppers opens ``views`` signed-in pages a minute, each page reading their
lead, wallet history and coupons and the ways to earn, and spins once a minute. A minute lasts
``minute_seconds`` here, and every setting measured in time is scaled with it (the kept
answers' 30 s, the caches' 60 s, the rates a minute), so the calls a simulated minute are those
of a real one. It reports the upstream read calls a minute against the reads' slice, and that
every page was answered 200, fresh or stale (``X-Cache``); any other answer is counted by code.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.lab import Lab
from bench.load import _tokens

PAGE = (
    "leads/me",
    "wallettransactions?page=1&limit=10&sort=created_at&sort_op=DESC",
    "coupons?page=1&limit=10",
    "triggers?content_types=earn&page=1&limit=10",
)
CUSTOMER_READS = 3  # of a page's reads, the customer's own
MERCHANT = "/api/v2/merchant/"


def reads_section(minute: int, customers: int) -> str:
    """The reads of a storefront with ``customers`` shoppers, in a minute of ``minute`` s."""
    scale = minute / 60
    kept, cached = max(1, round(30 * scale)), max(1, round(60 * scale))
    # Each shopper's three answers, kept 30 s: at most twice a minute, and once more after a spin.
    slice_ = customers * CUSTOMER_READS * 3 + 10
    return f"""
routes = ["leads", "wallettransactions", "coupons", "triggers"]
budget = "{slice_}/{minute} seconds"
per_customer = "30/{minute} seconds"
cache_seconds = {cached}
customer_cache_seconds = {kept}
stale_seconds = {minute * 10}
"""


async def _count(lab: Lab, what: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{lab.upstream.url}/{what}") as r:
        return int(await r.text())


async def storefront_run(
    customers: int = 1000, views: int = 5, minute_seconds: int = 20, minutes: int = 2
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), with_redis=False)
        reads = reads_section(minute_seconds, customers)
        slice_ = int(reads.split('budget = "', 1)[1].split("/", 1)[0])
        budget = f"{slice_ * 4}/{minute_seconds} seconds"
        proxy = lab.proxy("proxy-storefront", "memory://", budget=budget, reads=reads)
        lab.start()
        answers: Counter[str] = Counter()
        spins: Counter[int] = Counter()
        try:
            tokens = _tokens("shopper", customers)
            connector = aiohttp.TCPConnector(limit=256)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

                async def page(auth: dict[str, str]) -> None:
                    for path in PAGE:
                        async with session.get(proxy.url + MERCHANT + path, headers=auth) as r:
                            await r.read()
                            if r.status == 200:
                                fresh = r.headers.get("X-Cache") != "STALE"
                                answers["200 fresh" if fresh else "200 stale"] += 1
                            else:
                                body = await r.json(content_type=None)
                                answers[f"{r.status} {body['error']['code']}"] += 1

                async def shopper(tok: str) -> None:
                    auth = {"Authorization": f"Bearer {tok}"}
                    rng = random.Random(tok)
                    gap = minute_seconds / views
                    await asyncio.sleep(rng.uniform(0, gap))
                    spin_at = rng.randrange(views)
                    for n in range(views * minutes):
                        started = time.monotonic()
                        await page(auth)
                        if n % views == spin_at:
                            url = proxy.url + "/v1/triggers/spin-wheel"
                            json = auth | {"Content-Type": "application/json"}
                            async with session.post(url, data=b"{}", headers=json) as r:
                                await r.read()
                                spins[r.status] += 1
                        await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))

                started = time.monotonic()
                await asyncio.gather(*(shopper(t) for t in tokens))
                elapsed = time.monotonic() - started
            reads_made = await _count(lab, "count-reads")
        finally:
            lab.stop()
    per_minute = reads_made / minutes
    pages = sum(answers.values()) // len(PAGE)
    return {
        "customers": customers,
        "simulated minute (s)": minute_seconds,
        "minutes": minutes,
        "seconds taken": round(elapsed, 1),
        "page views": pages,
        "upstream read calls a minute": round(per_minute),
        "reads slice (calls a minute)": slice_,
        "within the slice": per_minute <= slice_,
        "without kept answers (calls a minute)": customers * views * CUSTOMER_READS,
        "read answers": dict(answers),
        "every read answered 200 (fresh or stale)": set(answers) <= {"200 fresh", "200 stale"},
        "spins": dict(spins),
    }
