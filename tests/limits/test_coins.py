"""Coin budgets in the stores: a reservation fits or spends nothing, settles to what was paid,
and replicas sharing one Redis never give out more than the budget, however many customers
spin at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.config.settings import Rate
from proxy.limits.coins import CoinWindow, coin_windows
from proxy.limits.decisions import LimitStore, Outcome
from proxy.limits.keys import Window
from proxy.limits.memory_store import MemoryStore
from proxy.limits.redis_store import RedisStore
from tests.helpers import (
    Clock,
    Harness,
    Upstream,
    make_settings,
    nector_success,
    need,
    open_harness,
    token,
)
from tests.redis_util import SHARED_REDIS, redis_available, shared_redis_store
from tests.rewards.test_campaign import PATH, scratch

BUDGET = CoinWindow("k:86400:campaign", 100, 86400, 50)
WINDOW = Window("c:60:customer", 100, 60)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> LimitStore:
    return MemoryStore(clock=Clock()) if request.param == "memory" else shared_redis_store()


async def test_a_reservation_that_does_not_fit_spends_none_of_the_other_windows(
    store: LimitStore,
) -> None:
    assert (await store.admit([WINDOW], [], None, [BUDGET])).outcome is Outcome.ADMITTED
    assert (await store.admit([WINDOW], [], None, [BUDGET])).outcome is Outcome.ADMITTED
    refused = await store.admit([WINDOW], [], None, [BUDGET])
    assert refused.outcome is Outcome.COINS_SPENT
    assert 86390 < refused.retry_after <= 86400
    admitted = await store.admit([WINDOW], [], None)
    assert admitted.windows[0].remaining == 97  # the refused request counted nowhere


async def test_settling_gives_back_what_was_not_paid(store: LimitStore) -> None:
    first = await store.admit([], [], None, [BUDGET])
    await store.settle([BUDGET], first.ticket, 20)
    second = await store.admit([], [], None, [BUDGET])
    assert second.outcome is Outcome.ADMITTED  # 20 + 50 fit in 100
    refused = await store.admit([], [], None, [BUDGET])
    assert refused.outcome is Outcome.COINS_SPENT
    await store.settle([BUDGET], second.ticket, 0)
    assert (await store.admit([], [], None, [BUDGET])).outcome is Outcome.ADMITTED


async def test_a_released_reservation_frees_its_coins(store: LimitStore) -> None:
    first = await store.admit([WINDOW], [], None, [BUDGET])
    await store.admit([WINDOW], [], None, [BUDGET])
    await store.release([WINDOW], [], None, first.ticket, [BUDGET])
    assert (await store.admit([WINDOW], [], None, [BUDGET])).outcome is Outcome.ADMITTED


async def test_the_wait_is_until_enough_of_the_oldest_coins_leave() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    hour = CoinWindow("k:3600:campaign", 100, 3600, 50)
    first = await store.admit([], [], None, [hour])
    await store.settle([hour], first.ticket, 30)
    clock.now += 600
    await store.admit([], [], None, [hour])  # 30 + 50: 20 left
    clock.now += 600
    refused = await store.admit([], [], None, [hour])
    # 30 more must leave: the first entry's, at 3600 s after it.
    assert refused.retry_after == 2400
    clock.now += 2400
    assert (await store.admit([], [], None, [hour])).outcome is Outcome.ADMITTED


async def test_the_memory_store_forgets_a_budget_once_its_window_passes() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.admit([], [], None, [BUDGET])
    assert len(store) == 1
    clock.now += 86401
    await store.admit([], [], None, [CoinWindow("k:60:other", 100, 60, 1)])
    assert len(store) == 1


def test_a_customers_coin_window_is_keyed_like_their_windows_and_apart_from_them() -> None:
    windows = coin_windows(
        "trigger", "c:customer", budget=Rate(5000, 86400), per_customer=Rate(200, 86400), reserve=9
    )
    assert [w.key.split(":")[0] for w in windows] == ["k", "kc"]
    assert windows[1].key.startswith("kc:86400:")
    assert windows[0].limit == 5000


async def test_two_replicas_never_reserve_more_than_the_budget() -> None:
    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    prefix = f"test:{uuid.uuid4().hex}:"
    replicas = [RedisStore(SHARED_REDIS, prefix=prefix) for _ in range(2)]
    budget = CoinWindow("k:86400:campaign", 1000, 86400, 50)
    try:
        decisions = await asyncio.gather(
            *[
                replicas[i % 2].admit([Window(f"c:60:c{i}", 5, 60)], [], None, [budget])
                for i in range(100)
            ]
        )
    finally:
        for replica in replicas:
            await replica.aclose()
    assert sum(d.outcome is Outcome.ADMITTED for d in decisions) == 20


@contextlib.asynccontextmanager
async def replicas(budget: str, coins: list[int]) -> AsyncIterator[list[Harness]]:
    """Two apps on one Redis, Nector paying ``coins`` (drawn from them) for each reward."""
    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    prefix = f"test:{uuid.uuid4().hex}:"
    settings = make_settings(triggers=[scratch(coin_budget=budget)])
    draw = random.Random(7)

    def pay(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=nector_success(draw.choice(coins)))

    async with contextlib.AsyncExitStack() as stack:
        apps = []
        for _ in range(2):
            store = RedisStore(SHARED_REDIS, prefix=prefix)
            upstream = Upstream(answer=pay)
            apps.append(
                await stack.enter_async_context(
                    open_harness(settings, upstream=upstream, store=store)
                )
            )
        yield apps


async def spin_all(apps: list[Harness], customers: int) -> list[httpx.Response]:
    return await asyncio.gather(
        *[apps[i % 2].post(PATH, tok=token(f"customer-{i:04d}")) for i in range(customers)]
    )


async def test_two_replicas_with_concurrent_customers_give_exactly_the_budget() -> None:
    # Every reward pays the range's most (50): 500 coins are exactly ten rewards.
    async with replicas("500/day", [50]) as apps:
        answers = await spin_all(apps, 40)
        paid = [a.json()["data"]["wallet_reward"]["coins"] for a in answers if a.status_code == 200]
        assert sum(paid) == 500
        assert sorted({a.status_code for a in answers}) == [200, 429]
        assert sum(len(a.upstream.requests) for a in apps) == 10


async def test_two_replicas_settling_what_nector_paid_never_pass_the_budget() -> None:
    async with replicas("500/day", [5, 20, 50]) as apps:
        answers = await spin_all(apps, 30)
        answers += await spin_all(apps, 30)  # after the first wave has settled
        for i in range(30):  # one at a time: each is admitted while 50 more coins fit
            answers.append(await apps[i % 2].post(PATH, tok=token(f"customer-late-{i:04d}")))
        paid = [a.json()["data"]["wallet_reward"]["coins"] for a in answers if a.status_code == 200]
        assert 450 < sum(paid) <= 500


async def test_a_reservation_no_replica_acknowledged_gives_its_coins_back() -> None:
    from proxy.errors import StorageUnavailable
    from proxy.limits.keys import idempotency_claim

    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    prefix = f"test:{uuid.uuid4().hex}:"
    waiting = RedisStore(SHARED_REDIS, prefix=prefix, replica_acks=1, replica_wait_seconds=0.05)
    alone = RedisStore(SHARED_REDIS, prefix=prefix)
    claim = idempotency_claim(
        "c:customer",
        "key-1",
        trigger_id="t",
        source="web",
        body=b"{}",
        in_flight_seconds=15,
        ttl_seconds=600,
    )
    try:
        with pytest.raises(StorageUnavailable):
            await waiting.admit([WINDOW], [], claim, [BUDGET])  # the shared Redis has no replica
        for _ in range(2):  # the whole budget is still there
            assert (await alone.admit([WINDOW], [], None, [BUDGET])).outcome is Outcome.ADMITTED
    finally:
        await waiting.aclose()
        await alone.aclose()
