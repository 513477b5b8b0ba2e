"""Rate limits and idempotency, through the app, on both stores.

The memory store runs on an injected clock, so windows are tested to the second without
sleeping; the same claims run against the machine's Redis (each test under its own key prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from proxy.config.settings import Rate
from proxy.identity.auth import FailureLimit
from proxy.limits.decisions import Outcome, StoredAnswer
from proxy.limits.keys import (
    IdempotencyClaim,
    Window,
    compact,
    customer_windows,
    idempotency_claim,
    window_seconds,
)
from proxy.limits.memory_store import MemoryStore
from proxy.limits.redis_store import RedisStore
from tests.helpers import (
    CHECKIN,
    SPIN,
    Clock,
    Harness,
    Upstream,
    error_code,
    make_settings,
    nector_success,
    open_harness,
    token,
)
from tests.redis_util import free_port, shared_redis_store


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def harness_for(kind: str, **sections: Any) -> AsyncIterator[Harness]:
    store = MemoryStore() if kind == "memory" else shared_redis_store()
    async with open_harness(make_settings(**sections), store=store) as h:
        yield h


@pytest.fixture
async def h(store_kind: str) -> AsyncIterator[Harness]:
    async with harness_for(store_kind) as harness:
        yield harness


# --- windows --------------------------------------------------------------------------------


async def test_a_window_allows_exactly_its_limit(h: Harness) -> None:
    statuses = [(await h.spin()).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(h.upstream.requests) == 3


async def test_429_carries_retry_after_and_the_rate_limit_headers(h: Harness) -> None:
    for _ in range(3):
        await h.spin()
    refused = await h.spin()
    assert error_code(refused) == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-limit"] == "3"


async def test_success_carries_the_rate_limit_headers_once(h: Harness) -> None:
    first = await h.spin()
    assert first.headers["ratelimit-limit"] == "3"
    assert first.headers["ratelimit-remaining"] == "2"
    assert 59 <= int(first.headers["ratelimit-reset"]) <= 60
    assert first.headers["ratelimit-policy"] == '"1m";q=3;w=60'
    assert first.headers["ratelimit"] == '"1m";r=2;t=60'
    assert len(first.headers.get_list("ratelimit-limit")) == 1


async def test_alias_id_and_dropin_share_one_quota(h: Harness) -> None:
    tok = token()
    answers = [
        await h.post("/v1/triggers/spin-wheel", tok=tok),
        await h.post(f"/v1/triggers/{SPIN}", tok=tok),
        await h.post("/api/v2/merchant/activities", tok=tok, body={"trigger_id": SPIN}),
        await h.post(f"/v1/triggers/{SPIN.upper()}", tok=tok),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]


async def test_customers_and_triggers_have_separate_quotas(h: Harness) -> None:
    for _ in range(3):
        await h.spin(token("customer-aaaa"))
    assert (await h.spin(token("customer-bbbb"))).status_code == 200
    assert (
        await h.post("/v1/triggers/daily-checkin", tok=token("customer-aaaa"))
    ).status_code == 200


async def test_lead_and_customer_with_the_same_id_are_different_subjects(h: Harness) -> None:
    lead = "2b7e1516-28ae-4d2a-a6f7-15887e09cf4f"
    for _ in range(3):
        await h.spin(token(lead))
    assert (await h.spin(token(None, lead_id=lead))).status_code == 200


async def test_refused_requests_spend_no_quota(h: Harness) -> None:
    tok = token()
    for _ in range(3):  # refused by later checks than the limit's own inputs
        assert (await h.spin(tok, body={"trace": {}})).status_code == 400
        assert (await h.spin(tok, headers={"x-source": "unix"})).status_code == 403
    assert [(await h.spin(tok)).status_code for _ in range(3)] == [200, 200, 200]


async def test_the_workspace_budget_is_503_upstream_busy(store_kind: str) -> None:
    async with harness_for(store_kind, limits={"upstream": "2/minute"}) as h:
        codes = [(await h.spin(token(f"customer-{i:04}"))).status_code for i in range(3)]
        assert codes == [200, 200, 503]
        busy = await h.spin(token("customer-9999"))
        assert error_code(busy) == "upstream_busy"
        assert 1 <= int(busy.headers["retry-after"]) <= 60
        assert len(h.upstream.requests) == 2


async def test_customer_limit_is_checked_before_the_budget(store_kind: str) -> None:
    async with harness_for(store_kind, limits={"upstream": "3/minute"}) as h:
        for _ in range(3):
            await h.spin()
        # Both the customer's window and the budget are full: the customer's answer wins.
        assert error_code(await h.spin()) == "rate_limited"


async def test_a_request_over_one_window_spends_none_of_the_others(store_kind: str) -> None:
    """All or nothing: a refusal by the customer's window leaves the budget untouched."""
    async with harness_for(store_kind, limits={"upstream": "4/minute"}) as h:
        for _ in range(3):
            await h.spin(token("customer-aaaa"))
        for _ in range(5):
            assert (await h.spin(token("customer-aaaa"))).status_code == 429
        assert (await h.spin(token("customer-bbbb"))).status_code == 200


async def test_two_hundred_concurrent_requests_pass_exactly_the_limit(store_kind: str) -> None:
    triggers = [{"id": SPIN, "name": "spin-wheel", "per_customer": "5/minute"}]
    async with harness_for(store_kind, triggers=triggers) as h:
        tok = token()
        answers = await asyncio.gather(*(h.spin(tok) for _ in range(200)))
        codes = [a.status_code for a in answers]
        assert codes.count(200) == 5
        assert codes.count(429) == 195
        assert len(h.upstream.requests) == 5


# --- exact windows on the memory store's clock -----------------------------------------------


async def test_moving_window_frees_exactly_when_the_oldest_leaves() -> None:
    clock = Clock()
    triggers = [{"id": SPIN, "name": "spin-wheel", "per_customer": "2/minute;3/hour"}]
    async with open_harness(make_settings(triggers=triggers), store=MemoryStore(clock=clock)) as h:
        assert (await h.spin()).status_code == 200  # t=0
        clock.now += 30
        assert (await h.spin()).status_code == 200  # t=30
        clock.now += 1
        refused = await h.spin()  # t=31: the minute window is full until t=60
        assert refused.headers["retry-after"] == "29"
        clock.now += 28.5  # t=59.5: still full; never earlier than the window frees
        assert (await h.spin()).status_code == 429
        clock.now += 0.5  # t=60: the first request leaves the minute window
        ok = await h.spin()
        assert ok.status_code == 200
        assert ok.headers["ratelimit-remaining"] == "0"  # the hour window: 3 of 3
        clock.now += 60  # t=120: the minute window has room, the hour does not until t=3600
        refused = await h.spin()
        assert refused.headers["retry-after"] == str(3600 - 120)


async def test_retry_after_rounds_up() -> None:
    clock = Clock()
    triggers = [{"id": SPIN, "name": "spin-wheel", "per_customer": "1/minute"}]
    async with open_harness(make_settings(triggers=triggers), store=MemoryStore(clock=clock)) as h:
        await h.spin()
        clock.now += 0.2
        assert (await h.spin()).headers["retry-after"] == "60"  # 59.8 s, rounded up


async def test_memory_store_forgets_expired_windows() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    window = Window("c:60:x", 1, 60)
    for i in range(1000):
        await store.admit([Window(f"c:60:{i}", 1, 60)], (), None)
    assert len(store) == 1000
    clock.now += 61
    await store.admit([window], (), None)
    assert len(store) == 1


async def test_memory_store_windows_kept_as_one_time_or_a_list_decide_alike() -> None:
    """A window holding one time keeps it as a bare float (memory per customer); from its
    second time on it is a list. Both must count, refuse, free and expire at the same moments
    as the exact moving window."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    one, three = Window("c:60:one", 1, 60), Window("c:60:three", 3, 60)
    start = clock.now
    for window in (one, three):
        assert (await store.admit([window], (), None)).outcome == Outcome.ADMITTED
    clock.now += 10
    refused = await store.admit([one], (), None)
    assert (refused.outcome, refused.retry_after) == (Outcome.RATE_LIMITED, 50)
    for _ in range(2):  # the second and third times turn the float into a list
        assert (await store.admit([three], (), None)).outcome == Outcome.ADMITTED
    refused = await store.admit([three], (), None)
    assert (refused.outcome, refused.retry_after) == (Outcome.RATE_LIMITED, 50)
    clock.now = start + 60  # the first time leaves both windows
    assert (await store.admit([one], (), None)).outcome == Outcome.ADMITTED
    admitted = await store.admit([three], (), None)
    assert admitted.outcome == Outcome.ADMITTED
    assert admitted.windows[0].remaining == 0
    clock.now += 61
    await store.admit([Window("c:60:other", 1, 60)], (), None)  # a sweep
    assert len(store) == 1


def test_memory_store_keys_hold_their_digest_raw_and_stay_apart() -> None:
    windows = customer_windows(SPIN, "customer_id:c1", (Rate(3, 60), Rate(10, 86400)))
    claim = idempotency_claim(
        "customer_id:c1",
        "k",
        trigger_id=SPIN,
        source="web",
        body=b"{}",
        in_flight_seconds=15,
        ttl_seconds=60,
    )
    keys = [w.key for w in windows] + [claim.key, "b:60", f"k:60:{SPIN}"]
    held = [compact(key) for key in keys]
    assert len(set(held)) == len(keys)
    assert [len(k) for k in held[:3]] == [len("c:60:") + 12, len("c:86400:") + 12, 2 + 12]
    assert held[3:] == [b"b:60", f"k:60:{SPIN}".encode()]
    assert [window_seconds(k) for k in held[:2] + held[3:]] == [60, 86400, 60, 60]


async def test_memory_store_records_replay_refuse_reuse_and_expire() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)

    def claim(body: bytes) -> IdempotencyClaim:
        return idempotency_claim(
            "customer_id:c1",
            "key-1",
            trigger_id=SPIN,
            source="web",
            body=body,
            in_flight_seconds=15,
            ttl_seconds=60,
        )

    first = claim(b"{}")
    assert (await store.admit((), (), first)).outcome == Outcome.ADMITTED
    assert (await store.admit((), (), first)).outcome == Outcome.IN_FLIGHT
    await store.finish(first, StoredAnswer(200, b'{"a":1}'))
    replay = await store.admit((), (), first)
    assert (replay.outcome, replay.answer) == (Outcome.REPLAY, StoredAnswer(200, b'{"a":1}'))
    assert await store.recall(first) == replay
    assert (await store.admit((), (), claim(b"{ }"))).outcome == Outcome.KEY_REUSED
    await store.release((), (), first, clock.now)  # an answered record is never released
    clock.now += 59
    assert (await store.admit((), (), first)).outcome == Outcome.REPLAY
    clock.now += 2
    assert await store.recall(first) is None
    await store.admit([Window("c:60:other", 1, 60)], (), None)  # a sweep
    assert len(store) == 1


async def test_memory_store_at_its_bound_refuses_rather_than_evicts() -> None:
    clock = Clock()
    store = MemoryStore(max_keys=100, clock=clock)
    async with open_harness(make_settings(limits={"upstream": "1000/minute"}), store=store) as h:
        key = {"idempotency-key": "spin-1"}
        first = await h.spin(token("customer-0000"), headers=key)
        assert first.status_code == 200
        codes = [(await h.spin(token(f"customer-{i:04}"))).status_code for i in range(1, 200)]
        assert 503 in codes
        full = await h.spin(token("customer-9999"))
        assert error_code(full) == "storage_unavailable"
        # The live idempotency record survived: the retry replays, it does not pay again.
        again = await h.spin(token("customer-0000"), headers=key)
        assert again.headers["idempotent-replayed"] == "true"
        assert len(h.upstream.requests) == codes.count(200) + 1
        clock.now += 61  # the minute windows expire and make room again
        assert (await h.spin(token("customer-9999"))).status_code == 200


# --- idempotency ------------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_replays_without_a_second_call(h: Harness) -> None:
    first = await h.spin(headers={"idempotency-key": "spin-abc"})
    again = await h.spin(headers={"idempotency-key": "spin-abc"})
    assert again.status_code == first.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(h.upstream.requests) == 1


async def test_a_replay_spends_no_quota(h: Harness) -> None:
    for _ in range(5):
        assert (await h.spin(headers={"idempotency-key": "same"})).status_code == 200
    assert [(await h.spin()).status_code for _ in range(3)] == [200, 200, 429]


async def test_keys_are_scoped_to_the_customer(h: Harness) -> None:
    await h.spin(token("customer-aaaa"), headers={"idempotency-key": "k1"})
    other = await h.spin(token("customer-bbbb"), headers={"idempotency-key": "k1"})
    assert other.status_code == 200
    assert "idempotent-replayed" not in other.headers
    assert len(h.upstream.requests) == 2


async def test_the_same_key_for_another_request_is_422(h: Harness) -> None:
    await h.spin(headers={"idempotency-key": "k2"})
    other_trigger = await h.post(
        "/v1/triggers/daily-checkin", tok=token(), headers={"idempotency-key": "k2"}
    )
    other_source = await h.spin(headers={"idempotency-key": "k2", "x-source": "mobile"})
    for response in (other_trigger, other_source):
        assert response.status_code == 422
        assert error_code(response) == "idempotency_key_reused"
    assert len(h.upstream.requests) == 1


async def test_the_dropin_and_the_alias_are_the_same_request(h: Harness) -> None:
    await h.spin(headers={"idempotency-key": "k3"})
    again = await h.post(
        "/api/v2/merchant/activities", tok=token(), body={"trigger_id": SPIN},
        headers={"idempotency-key": "k3"},
    )  # fmt: skip
    assert again.headers["idempotent-replayed"] == "true"


async def test_upstream_failures_are_stored_and_never_resent(h: Harness) -> None:
    h.upstream.answer = lambda request: httpx.Response(502, text="bad gateway")
    first = await h.spin(headers={"idempotency-key": "k4"})
    h.upstream.answer = lambda request: httpx.Response(200, json=nector_success())
    again = await h.spin(headers={"idempotency-key": "k4"})
    assert first.status_code == again.status_code == 502
    assert error_code(first) == "upstream_error"
    assert again.json() == first.json()
    assert len(h.upstream.requests) == 1


async def test_nector_refusals_are_stored_too(h: Harness) -> None:
    envelope = {
        "meta": {"status": "error", "code": 422},
        "data": {"message": "Lead does not exists"},
    }
    h.upstream.answer = lambda request: httpx.Response(422, json=envelope)
    await h.spin(headers={"idempotency-key": "k5"})
    again = await h.spin(headers={"idempotency-key": "k5"})
    assert (again.status_code, again.json()) == (422, envelope)
    assert len(h.upstream.requests) == 1


async def test_a_refusal_before_the_call_releases_the_key(store_kind: str) -> None:
    triggers = [
        {"id": SPIN, "name": "spin-wheel", "per_customer": "1/minute"},
        {"id": CHECKIN, "name": "daily-checkin"},
    ]
    async with harness_for(store_kind, triggers=triggers) as h:
        await h.spin()
        refused = await h.spin(headers={"idempotency-key": "k6"})
        assert error_code(refused) == "rate_limited"
        # Had the refusal reserved k6, another request with it would be 422 key_reused.
        other = await h.post(
            "/v1/triggers/daily-checkin", tok=token(), headers={"idempotency-key": "k6"}
        )
        assert other.status_code == 200
        assert "idempotent-replayed" not in other.headers


async def test_the_same_key_in_flight_is_409_with_retry_after(store_kind: str) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return httpx.Response(200, json=nector_success())

    store = MemoryStore() if store_kind == "memory" else shared_redis_store()
    upstream = Upstream()
    async with open_harness(
        store=store, upstream=upstream, transport=httpx.MockTransport(slow)
    ) as h:
        first = asyncio.create_task(h.spin(headers={"idempotency-key": "k7"}))
        await entered.wait()
        second = await h.spin(headers={"idempotency-key": "k7"})
        assert second.status_code == 409
        assert error_code(second) == "idempotency_in_flight"
        assert int(second.headers["retry-after"]) >= 1
        release.set()
        assert (await first).status_code == 200
        third = await h.spin(headers={"idempotency-key": "k7"})
        assert third.headers["idempotent-replayed"] == "true"


async def test_concurrent_retries_reach_the_upstream_once(store_kind: str) -> None:
    calls = 0

    async def slowish(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=nector_success())

    store = MemoryStore() if store_kind == "memory" else shared_redis_store()
    async with open_harness(store=store, transport=httpx.MockTransport(slowish)) as h:
        answers = await asyncio.gather(
            *(h.spin(headers={"idempotency-key": "k8"}) for _ in range(20))
        )
        assert calls == 1
        assert sorted({a.status_code for a in answers}) in ([200, 409], [200])


async def test_a_call_that_never_finished_is_answered_as_lost_not_resent() -> None:
    """A reservation whose process died mid-call is never paid twice: after its deadline the
    key answers 502 instead of calling Nector again."""
    clock = Clock()
    calls = 0
    entered = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        entered.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async with open_harness(
        store=MemoryStore(clock=clock), transport=httpx.MockTransport(hang)
    ) as h:
        first = asyncio.create_task(h.spin(headers={"idempotency-key": "k9"}))
        await entered.wait()
        first.cancel()  # the process handling the first call dies mid-call
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert (
            error_code(await h.spin(headers={"idempotency-key": "k9"})) == "idempotency_in_flight"
        )
        clock.now += h.app.settings.upstream.timeout_seconds + 6
        lost = await h.spin(headers={"idempotency-key": "k9"})
        assert (lost.status_code, error_code(lost)) == (502, "upstream_error")
        assert calls == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9".encode(), "tab\there"])
async def test_malformed_idempotency_keys_are_400(harness: Harness, key: str | bytes) -> None:
    response = await harness.spin(headers={"idempotency-key": key})
    assert response.status_code == 400
    assert error_code(response) == "invalid_body"
    assert harness.upstream.requests == []


async def test_checkin_unaffected_by_spin_keys(h: Harness) -> None:
    await h.spin(headers={"idempotency-key": "k10"})
    response = await h.post(
        "/v1/triggers/daily-checkin", tok=token(), headers={"idempotency-key": "k11"}
    )
    assert response.status_code == 200
    assert [b["trigger_id"] for b in h.upstream.bodies] == [SPIN, CHECKIN]


# --- failed sessions per client address --------------------------------------------------------


async def forged(h: Harness, n: int) -> list[int]:
    forged_session = {"authorization": "Bearer forged"}
    return [
        (await h.post("/v1/triggers/spin-wheel", headers=forged_session)).status_code
        for _ in range(n)
    ]


async def test_failed_session_checks_are_limited_per_client_address() -> None:
    async with harness_for("memory", limits={"per_ip_invalid_session": "5/minute"}) as h:
        assert await forged(h, 7) == [401] * 5 + [429] * 2
        # Past the limit a valid session from that address gets the same 429 (no oracle for
        # telling valid tokens from forged ones), and nothing is forwarded.
        assert (await h.spin()).status_code == 429
        assert h.upstream.requests == []


async def test_failed_session_checks_never_touch_the_shared_store() -> None:
    """They are counted in the process: with the Redis store unreachable, forged tokens still
    get 401 and then 429, while rewards fail closed."""
    down = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2)
    settings = make_settings(limits={"per_ip_invalid_session": "3/minute"})
    async with open_harness(settings, store=down) as h:
        assert error_code(await h.spin()) == "storage_unavailable"
        assert await forged(h, 4) == [401, 401, 401, 429]


def test_the_failure_limit_is_an_exact_moving_window() -> None:
    clock = Clock()
    clock.now = 1000.0
    limit = FailureLimit(Rate(3, 60), clock=clock)
    for t in (0, 10, 20):
        clock.now = 1000 + t
        assert limit.hit("198.51.100.1") == 0
    clock.now = 1030
    assert limit.hit("198.51.100.1") == 30  # the failure at 1000 leaves the window at 1060
    assert limit.hit("198.51.100.2") == 0  # another address has its own window
    clock.now = 1059.5
    assert limit.hit("198.51.100.1") == pytest.approx(0.5)
    clock.now = 1060
    assert limit.hit("198.51.100.1") == 0  # refused failures were not counted
    assert limit.hit("198.51.100.1") == 10


def test_the_failure_limit_holds_a_bounded_number_of_addresses() -> None:
    clock = Clock()
    limit = FailureLimit(Rate(2, 60), max_addresses=3, clock=clock)
    for i in range(3):
        limit.hit(f"10.0.0.{i}")
    # Full, and nobody's window has emptied: a new address is not counted, old ones still are.
    for _ in range(5):
        assert limit.hit("10.0.0.9") == 0
    assert len(limit) == 3
    limit.hit("10.0.0.0")
    assert limit.hit("10.0.0.0") > 0
    # Once the windows empty, a sweep (at most once a second) makes room.
    clock.now += 61
    assert limit.hit("10.0.0.9") == 0
    assert limit.hit("10.0.0.9") == 0
    assert limit.hit("10.0.0.9") > 0
    assert len(limit) == 1


# --- over-quota customers remembered by the Redis store ---------------------------------------


def test_a_remembered_refusal_lasts_until_the_window_frees_and_never_answers_early() -> None:
    from proxy.limits.decisions import REFUSAL_MARGIN_SECONDS, Decision, WindowState
    from proxy.limits.redis_store import RefusedUntil

    clock = Clock()
    clock.now = 100.0
    refused = RefusedUntil(size=2, clock=clock)
    full = WindowState(0, 30.0)
    other = WindowState(5, 2.0)
    refused.remember("a", Decision(Outcome.RATE_LIMITED, 30.0, (full, other)))
    clock.now = 110.0
    known = refused.get("a")
    assert known is not None
    assert known.outcome is Outcome.RATE_LIMITED
    assert known.retry_after == 20.0  # counted from when the window frees, not sooner
    assert known.windows == (WindowState(0, 20.0), WindowState(5, 0.0))
    clock.now = 130.0 - REFUSAL_MARGIN_SECONDS  # from just before then, Redis is asked again
    assert refused.get("a") is None
    assert refused.get("unknown") is None
    # Bounded: the oldest remembered goes first once the expired ones are gone.
    for key in ("b", "c", "d"):
        refused.remember(key, Decision(Outcome.RATE_LIMITED, 30.0, (full,)))
    assert refused.get("b") is None
    assert refused.get("c") is not None
    assert refused.get("d") is not None


async def test_an_over_quota_customer_costs_no_redis_round_trip_until_the_window_frees() -> None:
    store = shared_redis_store()
    calls = 0
    ask = store._call

    async def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return await ask(*args)

    store._call = counted  # type: ignore[method-assign,assignment]
    settings = make_settings(
        triggers=[{"id": SPIN, "name": "spin-wheel", "per_customer": "2/second"}]
    )
    async with open_harness(settings, store=store) as h:
        assert [(await h.spin()).status_code for _ in range(2)] == [200, 200]
        asked = calls
        refusals = [await h.spin() for _ in range(5)]
        assert [r.status_code for r in refusals] == [429] * 5
        assert all(r.headers["retry-after"] == "1" for r in refusals)
        assert calls == asked + 1  # the first refusal asked Redis; the rest were remembered
        # A request with an Idempotency-Key still asks Redis (it may have an answer to replay).
        assert (await h.spin(headers={"idempotency-key": "k1"})).status_code == 429
        assert calls == asked + 2
        await asyncio.sleep(1.1)  # the window frees: Redis decides again, and admits
        assert (await h.spin()).status_code == 200
        assert len(h.upstream.requests) == 3


# --- repeats answered from the gateway's memo of decisions ------------------------------------


class CountingMemoryStore(MemoryStore):
    """A memory store that counts the decisions it is asked for."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.asked = 0

    async def admit(self, *args: Any) -> Any:
        self.asked += 1
        return await super().admit(*args)


def without_request_id(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k != "x-request-id"}


async def test_a_repeated_over_quota_request_is_answered_as_the_store_would_without_asking() -> (
    None
):
    clock = Clock()
    store = CountingMemoryStore(clock)
    triggers = [{"id": SPIN, "name": "spin-wheel", "per_customer": "2/minute;3/hour"}]
    async with open_harness(make_settings(triggers=triggers), store=store) as h:
        # Two tokens of one customer: the same quota, but not the same request.
        first, second = token(name="first device"), token(name="second device")
        assert (await h.spin(first)).status_code == 200  # t=0
        clock.now += 30
        assert (await h.spin(first)).status_code == 200  # t=30
        clock.now += 1
        assert (await h.spin(first)).status_code == 429  # t=31: decided by the store
        asked = store.asked
        clock.now += 14.3  # t=45.3
        remembered = await h.spin(first)
        assert store.asked == asked  # a repeat: not asked
        decided = await h.spin(second)
        assert store.asked == asked + 1  # another token: asked
        assert remembered.status_code == decided.status_code == 429
        assert without_request_id(remembered) == without_request_id(decided)
        assert remembered.headers["retry-after"] == "15"  # 14.7 s until t=60, rounded up
        assert remembered.json()["error"]["code"] == "rate_limited"
        clock.now += 14.7  # t=60: the first spin leaves the minute window
        assert (await h.spin(first)).status_code == 200
        assert len(h.upstream.requests) == 3


async def test_a_repeated_replay_is_answered_from_memory_for_at_most_a_second() -> None:
    clock = Clock()
    store = CountingMemoryStore(clock)
    async with open_harness(make_settings(), store=store) as h:
        tok, key = token(), {"idempotency-key": "spin-1"}
        first = await h.spin(tok, headers=key)
        replays = [await h.spin(tok, headers=key) for _ in range(3)]
        assert store.asked == 2  # the call, and the first replay; the others remembered
        for replay in replays:
            assert replay.status_code == first.status_code == 200
            assert replay.content == first.content
            assert replay.headers["idempotent-replayed"] == "true"
        clock.now += 1.0  # no longer remembered: the store is asked, and still replays
        again = await h.spin(tok, headers=key)
        assert store.asked == 3
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert len(h.upstream.requests) == 1


async def test_a_remembered_decision_answers_only_the_same_request_with_a_valid_session() -> None:
    clock = Clock()
    store = CountingMemoryStore(clock)
    settings = make_settings(
        triggers=[
            {
                "id": SPIN,
                "name": "spin-wheel",
                "sources": ["web", "mobile"],
                "per_customer": "1/day",
            }
        ]
    )
    async with open_harness(settings, store=store) as h:
        tok = token()
        assert (await h.spin(tok)).status_code == 200
        assert (await h.spin(tok)).status_code == 429
        asked = store.asked
        # The contract's earlier checks still come first.
        forbidden = await h.spin(tok, body={"customer_id": "someone-else"})
        assert error_code(forbidden) == "forbidden_field"
        unknown = await h.post("/v1/triggers/not-listed", tok=tok)
        assert error_code(unknown) == "trigger_not_allowed"
        bad_source = await h.spin(tok, headers={"x-source": "fax"})
        assert error_code(bad_source) == "invalid_source"
        # Another source is another request: decided by the store (still over quota).
        assert (await h.spin(tok, headers={"x-source": "mobile"})).status_code == 429
        assert store.asked == asked + 1
        # The session is checked on every request: once it expires, nothing is remembered.
        assert h.app._gateway is not None
        h.app._gateway.auth._verifier._clock = lambda: 4_000_000_000.0
        expired = await h.spin(tok)
        assert error_code(expired) == "expired_session"
        assert store.asked == asked + 1


def test_the_decision_memo_is_bounded_and_forgets_what_expired() -> None:
    from proxy.limits.decisions import StoredAnswer
    from proxy.rewards.memo import DecisionMemo, Repeat

    clock = Clock()
    memo = DecisionMemo(clock, size=2)
    entry = Repeat("spin-wheel", "web", StoredAnswer(200, b"{}"), None)
    memo.put("a", clock.now + 5, entry)
    memo.put("b", clock.now + 5, entry)
    memo.put("c", clock.now + 5, entry)  # full: the oldest goes
    assert memo.get("a") is None
    assert memo.get("b") == entry
    assert len(memo) == 2
    clock.now += 5  # expired: forgotten when asked
    assert memo.get("c") is None
    assert len(memo) == 1


def test_over_quota_headers_are_the_stores_at_every_moment_and_rebuilt_only_when_they_change() -> (
    None
):
    from proxy.http.responses import quota_headers, rate_policy
    from proxy.limits.decisions import Decision, WindowState
    from proxy.rewards.memo import OverQuota

    windows = (Window("c:60:x", 2, 60), Window("c:3600:x", 5, 3600))
    policy = rate_policy([Rate(2, 60), Rate(5, 3600)])
    # Full for 20.5 s more in the minute window; 3 left in the hour.
    decision = Decision(Outcome.RATE_LIMITED, 20.5, (WindowState(0, 20.5), WindowState(3, 900.0)))
    over = OverQuota(1000.0, decision, windows, policy)
    for elapsed in (0.0, 0.2, 0.5, 1.0, 7.25, 20.4):
        shown = over.headers(1000.0 + elapsed)
        states = [WindowState(0, 20.5 - elapsed), WindowState(3, 900.0 - elapsed)]
        retry = (b"retry-after", str(math.ceil(20.5 - elapsed)).encode())
        assert shown == [*quota_headers(windows, states, policy), retry], elapsed
    assert over.headers(1020.45) is over.headers(1020.4)  # the same second: not rebuilt


# --- audit lines under a flood of forged tokens -------------------------------------------------


async def test_a_flood_of_forged_tokens_writes_an_access_line_each_and_few_audit_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="trigger_proxy")
    async with harness_for("memory", limits={"per_ip_invalid_session": "1000/minute"}) as h:
        assert await forged(h, 20) == [401] * 20
    access = [r for r in caplog.records if r.name == "trigger_proxy.access"]
    audit = [r for r in caplog.records if r.name == "trigger_proxy.audit"]
    assert [vars(r)["fields"]["session_refusal"] for r in access] == ["invalid_session"] * 20
    assert len(audit) == 1  # one address, within a second
    assert vars(audit[0])["fields"]["event"] == "invalid_session"
    assert "suppressed" not in vars(audit[0])["fields"]


def test_the_audit_throttle_writes_one_line_a_second_per_address_and_counts_the_rest() -> None:
    from proxy.identity.auth import AuditThrottle

    clock = Clock()
    throttle = AuditThrottle(seconds=1.0, max_addresses=2, clock=clock)
    assert throttle.admit("a") == 0
    assert [throttle.admit("a") for _ in range(3)] == [None] * 3
    assert throttle.admit("b") == 0  # another address has its own
    clock.now += 1.0
    assert throttle.admit("a") == 3  # written again, saying how many were left out
    assert throttle.admit("a") is None
    # Bounded: a third address fits once the addresses not seen for a second are forgotten,
    # and while none can be, lines are written rather than tracked.
    assert throttle.admit("c") == 0  # "b" was forgotten
    assert throttle.admit("d") == 0
    assert throttle.admit("d") == 0
