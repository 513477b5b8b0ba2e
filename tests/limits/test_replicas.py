"""Idempotency records and Redis replicas: what ``limits.replica_acks`` asks of the store (the
failover itself, with a lagging replica: tests/limits/test_sentinel.py)."""

from __future__ import annotations

import uuid

import pytest

from proxy.config.schema import LimitSettings
from proxy.errors import StorageUnavailable
from proxy.limits.decisions import Outcome
from proxy.limits.keys import IdempotencyClaim, Window, idempotency_claim
from proxy.limits.redis_store import RedisStore
from proxy.limits.stores import replica_acks
from tests.helpers import need
from tests.redis_util import SHARED_REDIS, redis_available

WINDOW = Window("w:spin:customer-0001", 3, 60)


def claim() -> IdempotencyClaim:
    return idempotency_claim(
        "c:customer-0001",
        "key-1",
        trigger_id="spin",
        source="web",
        body=b"{}",
        in_flight_seconds=15,
        ttl_seconds=600,
    )


async def test_a_key_no_replica_acknowledged_is_refused_and_left_free() -> None:
    # The shared Redis has no replica: a store that waits for one must refuse, not promise.
    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    prefix = f"test:{uuid.uuid4().hex}:"
    waiting = RedisStore(SHARED_REDIS, prefix=prefix, replica_acks=1, replica_wait_seconds=0.05)
    alone = RedisStore(SHARED_REDIS, prefix=prefix)
    try:
        with pytest.raises(StorageUnavailable) as refused:
            await waiting.admit((WINDOW,), (), claim())
        assert refused.value.cause == "no_replica_acknowledged"
        # Released: the same key is a fresh attempt, and the window spent nothing.
        decision = await alone.admit((WINDOW,), (), claim())
        assert decision.outcome is Outcome.ADMITTED
        assert decision.windows[0].remaining == WINDOW.limit - 1
        # A request without a key never waits: it promises nothing a failover could break.
        assert (await waiting.admit((WINDOW,), (), None)).outcome is Outcome.ADMITTED
    finally:
        await waiting.aclose()
        await alone.aclose()


@pytest.mark.parametrize(
    ("url", "given", "acks"),
    [
        ("redis://127.0.0.1:6379/0", -1, 0),
        ("redis+sentinel://s1:26379/rewards/0", -1, 1),
        ("rediss+sentinel://s1:26379/rewards/0", -1, 1),
        ("redis+sentinel://s1:26379/rewards/0", 0, 0),
        ("redis://127.0.0.1:6379/0", 2, 2),
    ],
)
def test_by_default_only_a_sentinel_deployment_waits_for_a_replica(
    url: str, given: int, acks: int
) -> None:
    assert replica_acks(LimitSettings(storage_url=url, replica_acks=given)) == acks
