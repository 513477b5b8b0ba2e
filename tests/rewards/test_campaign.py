"""A trigger's campaign controls through the app, on both stores: its schedule, its coin
budgets, its dry run and its human check (against a stand-in verifier), each asserting what
reached Nector and what was spent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from proxy.identity.sessions import mint_token
from proxy.limits.memory_store import MemoryStore
from proxy.rewards.campaign import paid_coins
from tests.helpers import (
    ENVIRON,
    SHOP,
    Clock,
    Harness,
    Upstream,
    error_code,
    make_settings,
    nector_success,
    open_harness,
    token,
)
from tests.observe.test_metrics import samples, value
from tests.redis_util import shared_redis_store

SCRATCH = "5d2c8a14-3f6e-4b7a-9c1d-2e8f7a6b5c4d"
PATH = "/v1/triggers/scratch-card"
VERIFY_URL = "https://verify.test/turnstile/v0/siteverify"
SECRET = "0x4AAAAAAA-provider-secret-key"
NOW = 1_796_212_800.0  # 2026-12-02T12:00:00Z, a Wednesday


def scratch(**keys: Any) -> dict[str, Any]:
    wallet = {"title": "Scratch", "operation": "cr", "coin_range": {"min": 5, "max": 50}}
    trigger = {"id": SCRATCH, "name": "scratch-card", "per_customer": "100/minute"}
    return {**trigger, "override": {"wallet": wallet}, **keys}


class Verifier:
    """A stand-in for the provider's siteverify: tokens starting "pass" pass, once each."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.fault: Exception | None = None
        self._seen: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        if self.fault is not None:
            raise self.fault
        token = form.get("response", "")
        ok = form.get("secret") == SECRET and token.startswith("pass") and token not in self._seen
        self._seen.add(token)
        codes = [] if ok else ["invalid-input-response"]
        return httpx.Response(200, json={"success": ok, "error-codes": codes})


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def campaign(
    kind: str, clock: Clock | None = None, **keys: Any
) -> AsyncIterator[tuple[Harness, Verifier]]:
    verifier, upstream = Verifier(), Upstream()
    settings = make_settings(
        {**ENVIRON, "TRIGGER_PROXY_CHALLENGE_SECRET": SECRET},
        triggers=[scratch(**keys)],
        challenge={"site_key": "0x4AAAAAAA-site-key", "turnstile_verify_url": VERIFY_URL},
        server={"metrics_on_main_port": True},
    )
    transport = httpx.MockTransport(
        lambda r: verifier(r) if r.url.host == "verify.test" else upstream(r)
    )
    store = MemoryStore(clock=clock or Clock(NOW)) if kind == "memory" else shared_redis_store()
    async with open_harness(settings, upstream=upstream, store=store, transport=transport) as h:
        yield h, verifier


async def scratch_card(h: Harness, customer: str = "customer-0001", **headers: str) -> Any:
    return await h.post(PATH, tok=token(customer), headers=headers)


# --- schedules ------------------------------------------------------------------------------


async def test_before_its_start_a_trigger_is_not_active_and_says_when_it_opens(
    store_kind: str,
) -> None:
    async with campaign(store_kind, starts_at="2099-01-01T09:00:00Z") as (h, _):
        refused = await scratch_card(h)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "trigger_not_active"
        assert refused.json()["error"]["opens_at"] == "2099-01-01T09:00:00Z"
        assert int(refused.headers["retry-after"]) > 365 * 86400
        assert h.upstream.requests == []
        # Nothing was spent: the first request once it opens is the first one counted.
        assert "ratelimit-remaining" not in refused.headers


async def test_after_its_end_it_never_opens_again_and_has_no_retry_after(store_kind: str) -> None:
    async with campaign(store_kind, ends_at="2020-01-01T00:00:00Z") as (h, _):
        refused = await scratch_card(h)
        assert refused.status_code == 403
        assert refused.json()["error"]["opens_at"] is None
        assert "retry-after" not in refused.headers
        assert h.upstream.requests == []


async def test_a_drop_in_refusal_carries_nectors_envelope_and_opens_at() -> None:
    async with campaign("memory", starts_at="2099-01-01T09:00:00Z") as (h, _):
        refused = await h.post(
            "/api/v2/merchant/activities", tok=token(), body={"trigger_id": SCRATCH}
        )
        body = refused.json()
        assert body["meta"] == {"status": "error", "code": 403}
        assert body["data"]["message"]
        assert body["error"]["opens_at"] == "2099-01-01T09:00:00Z"


async def test_the_hours_open_and_close_on_the_injected_clock() -> None:
    clock = Clock(NOW)  # 12:00 UTC, 13:00 in Paris
    keys = {"hours": "09:00-12:30", "timezone": "Europe/Paris"}
    async with campaign("memory", clock, **keys) as (h, _):
        refused = await scratch_card(h)
        assert error_code(refused) == "trigger_not_active"
        assert refused.json()["error"]["opens_at"] == "2026-12-03T08:00:00Z"
        assert refused.headers["retry-after"] == str(20 * 3600)
        clock.now += 20 * 3600
        assert (await scratch_card(h)).status_code == 200
        assert len(h.upstream.requests) == 1


async def test_a_retry_after_the_campaign_closed_gets_its_first_answer(store_kind: str) -> None:
    clock = Clock(NOW)
    async with campaign(store_kind, clock, ends_at="2026-12-02T12:00:30Z") as (h, _):
        h.app._started().controls.clock = clock  # the schedule's clock, beside the store's
        first = await scratch_card(h, **{"idempotency-key": "spin-7"})
        assert first.status_code == 200
        clock.now += 60  # closed
        again = await scratch_card(h, **{"idempotency-key": "spin-7"})
        assert again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert error_code(await scratch_card(h, **{"idempotency-key": "spin-8"})) == (
            "trigger_not_active"
        )
        assert error_code(await scratch_card(h)) == "trigger_not_active"
        assert len(h.upstream.requests) == 1


async def test_the_public_view_shows_the_schedule_and_its_state_now() -> None:
    clock = Clock(NOW)
    keys = {"days": ["wed"], "hours": "09:00-17:00", "coin_budget": "5000/day"}
    async with campaign("memory", clock, **keys, dry_run=True, challenge="turnstile") as (h, _):
        shown = await h.client.get(PATH)
        trigger = shown.json()["trigger"]
        assert trigger["schedule"] == {
            "starts_at": None,
            "ends_at": None,
            "days": ["wed"],
            "hours": "09:00-17:00",
            "timezone": "UTC",
            "open": True,
            "opens_at": None,
            "closes_at": "2026-12-02T17:00:00Z",
        }
        assert trigger["coin_budget"] == {"coins": 5000, "period": "day"}
        assert trigger["dry_run"] is True
        assert trigger["challenge"] == {"provider": "turnstile", "site_key": "0x4AAAAAAA-site-key"}
        assert SECRET not in shown.text
        # Kept no longer than the state holds.
        assert shown.headers["cache-control"] == "public, max-age=300"
        assert shown.headers["vary"] == "Origin"  # public, so it varies with the origin
        clock.now += 5 * 3600 - 60
        assert (await h.client.get(PATH)).headers["cache-control"] == "public, max-age=60"
        clock.now += 120
        closed = (await h.client.get(PATH)).json()["trigger"]["schedule"]
        assert (closed["open"], closed["opens_at"]) == (False, "2026-12-09T09:00:00Z")


# --- coin budgets ---------------------------------------------------------------------------


async def test_a_coin_budget_refuses_once_the_most_a_reward_pays_no_longer_fits(
    store_kind: str,
) -> None:
    # Nector pays 50 each time (the range's most): 120 coins are two rewards, never three.
    async with campaign(store_kind, coin_budget="120/day") as (h, _):
        h.upstream.answer = lambda request: httpx.Response(200, json=nector_success(50))
        statuses = [(await scratch_card(h, f"customer-000{i}")).status_code for i in range(4)]
        assert statuses == [200, 200, 429, 429]
        refused = await scratch_card(h, "customer-0009")
        assert error_code(refused) == "coin_budget_spent"
        assert 86000 < int(refused.headers["retry-after"]) <= 86400
        assert len(h.upstream.requests) == 2


async def test_a_reservation_is_settled_to_the_coins_nector_paid(store_kind: str) -> None:
    # 10 coins paid each time, 40 of the 50 reserved given back: a reward is admitted while
    # 50 more fit in 100, so six are (60 paid), where unsettled reservations would admit two.
    async with campaign(store_kind, coin_budget="100/day") as (h, _):
        statuses = [(await scratch_card(h, f"customer-{i:04d}")).status_code for i in range(8)]
        assert statuses == [200] * 6 + [429] * 2


async def test_an_answer_that_names_no_coins_keeps_the_reservation(store_kind: str) -> None:
    async with campaign(store_kind, coin_budget="100/day") as (h, _):
        h.upstream.answer = lambda request: httpx.Response(
            200, json={"meta": {"status": "success"}, "data": {"activity": {"_id": "a"}}}
        )
        statuses = [(await scratch_card(h, f"customer-{i:04d}")).status_code for i in range(3)]
        assert statuses == [200, 200, 429]


async def test_nectors_own_refusal_pays_nothing_and_spends_no_coins(store_kind: str) -> None:
    async with campaign(store_kind, coin_budget="50/day") as (h, _):
        h.upstream.answer = lambda request: httpx.Response(
            422, json={"meta": {"status": "error"}, "data": {"message": "Lead does not exists"}}
        )
        assert [(await scratch_card(h, f"customer-{i:04d}")).status_code for i in range(3)] == [
            422
        ] * 3


async def test_a_call_that_never_reached_nector_gives_its_coins_back(store_kind: str) -> None:
    async with campaign(store_kind, coin_budget="50/day") as (h, _):

        def unreachable(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        h.upstream.answer = unreachable
        assert (await scratch_card(h)).status_code == 502
        h.upstream.answer = lambda request: httpx.Response(200, json=nector_success(50))
        assert (await scratch_card(h)).status_code == 200
        assert (await scratch_card(h, "customer-0002")).status_code == 429


async def test_a_call_lost_after_it_was_sent_keeps_its_coins_spent(store_kind: str) -> None:
    async with campaign(store_kind, coin_budget="50/day") as (h, _):

        def lost(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadError("reset", request=request)

        h.upstream.answer = lost
        assert error_code(await scratch_card(h)) == "upstream_error"
        assert error_code(await scratch_card(h, "customer-0002")) == "coin_budget_spent"


async def test_a_customers_coins_are_their_own(store_kind: str) -> None:
    async with campaign(store_kind, customer_coins="100/day") as (h, _):
        h.upstream.answer = lambda request: httpx.Response(200, json=nector_success(40))
        mine = [(await scratch_card(h)).status_code for _ in range(3)]
        assert mine == [200, 200, 429]  # 40 + 40 paid, 50 more would pass 100
        assert (await scratch_card(h, "customer-0002")).status_code == 200


async def test_a_window_refusal_spends_no_coins(store_kind: str) -> None:
    keys: dict[str, Any] = {"per_customer": "1/minute", "coin_budget": "100/day"}
    async with campaign(store_kind, **keys) as (h, _):
        h.upstream.answer = lambda request: httpx.Response(200, json=nector_success(50))
        assert (await scratch_card(h)).status_code == 200
        assert error_code(await scratch_card(h)) == "rate_limited"
        assert (await scratch_card(h, "customer-0002")).status_code == 200


async def test_a_budgets_coins_come_back_as_the_window_moves() -> None:
    clock = Clock(NOW)
    async with campaign("memory", clock, coin_budget="50/hour") as (h, _):
        h.upstream.answer = lambda request: httpx.Response(200, json=nector_success(50))
        assert (await scratch_card(h)).status_code == 200
        clock.now += 1800
        refused = await scratch_card(h, "customer-0002")
        assert refused.headers["retry-after"] == "1800"
        clock.now += 1800
        assert (await scratch_card(h, "customer-0002")).status_code == 200


# --- dry runs -------------------------------------------------------------------------------


async def test_a_dry_run_sends_nothing_and_answers_as_nector_would(store_kind: str) -> None:
    async with campaign(store_kind, dry_run=True, per_customer="2/minute") as (h, _):
        answer = await scratch_card(h)
        assert answer.status_code == 200
        body = answer.json()
        assert body["dry_run"] is True
        assert body["meta"] == {"status": "success"}
        reward = body["data"]["wallet_reward"]
        assert 5 <= reward["coins"] <= 50
        assert reward["operation"] == "cr"
        assert body["data"]["activity"]["trigger_id"] == SCRATCH
        assert h.upstream.requests == []
        # Every limit as usual.
        assert (await scratch_card(h)).status_code == 200
        assert error_code(await scratch_card(h)) == "rate_limited"
        found = samples((await h.client.get("/metrics")).text)
        assert value(found, "trigger_proxy_limit_decisions_total", decision="dry_run") == 2


async def test_a_dry_runs_coins_count_against_the_budget() -> None:
    async with campaign("memory", dry_run=True, coin_budget="50/day") as (h, _):
        assert (await scratch_card(h)).status_code == 200
        # Whatever it drew (5 to 50 coins), 50 more no longer fit in 50.
        assert error_code(await scratch_card(h, "customer-0002")) == "coin_budget_spent"
        assert h.upstream.requests == []


async def test_a_dry_run_with_an_idempotency_key_replays_its_answer() -> None:
    async with campaign("memory", dry_run=True) as (h, _):
        first = await scratch_card(h, **{"idempotency-key": "dry-1"})
        again = await scratch_card(h, **{"idempotency-key": "dry-1"})
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"


# --- the human check ------------------------------------------------------------------------


async def test_a_passing_token_is_verified_with_the_secret_before_the_reward(
    store_kind: str,
) -> None:
    async with campaign(store_kind, challenge="turnstile") as (h, verifier):
        answer = await scratch_card(h, **{"x-challenge-token": "pass-1"})
        assert answer.status_code == 200
        (form,) = verifier.forms
        assert form == {"secret": SECRET, "response": "pass-1", "remoteip": "203.0.113.7"}
        assert len(h.upstream.requests) == 1


@pytest.mark.parametrize("headers", [{}, {"x-challenge-token": "bot"}])
async def test_a_missing_or_bad_token_is_refused_before_any_quota(
    store_kind: str, headers: dict[str, str]
) -> None:
    async with campaign(store_kind, challenge="turnstile", per_customer="1/minute") as (h, _):
        refused = await scratch_card(h, **headers)
        assert refused.status_code == 403
        assert error_code(refused) == "challenge_failed"
        assert h.upstream.requests == []
        assert (await scratch_card(h, **{"x-challenge-token": "pass-2"})).status_code == 200


async def test_a_reused_token_is_refused(store_kind: str) -> None:
    async with campaign(store_kind, challenge="turnstile") as (h, verifier):
        assert (await scratch_card(h, **{"x-challenge-token": "pass-3"})).status_code == 200
        again = await scratch_card(h, "customer-0002", **{"x-challenge-token": "pass-3"})
        assert error_code(again) == "challenge_failed"
        assert len(verifier.forms) == 1  # refused without asking the provider again
        assert len(h.upstream.requests) == 1


@pytest.mark.parametrize(
    "fault",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")],
    ids=["unreachable", "slow"],
)
async def test_an_unavailable_provider_fails_closed(store_kind: str, fault: Exception) -> None:
    async with campaign(store_kind, challenge="turnstile") as (h, verifier):
        verifier.fault = fault
        refused = await scratch_card(h, **{"x-challenge-token": "pass-4"})
        assert refused.status_code == 503
        assert error_code(refused) == "challenge_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        assert h.upstream.requests == []
        # The token was never judged: once the provider is back it may pass.
        verifier.fault = None
        assert (await scratch_card(h, **{"x-challenge-token": "pass-4"})).status_code == 200


async def test_a_retry_with_the_same_key_replays_without_a_second_check(store_kind: str) -> None:
    async with campaign(store_kind, challenge="turnstile") as (h, verifier):
        headers = {"x-challenge-token": "pass-5", "idempotency-key": "spin-5"}
        first = await scratch_card(h, **headers)
        again = await scratch_card(h, **headers)
        assert first.status_code == again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert len(verifier.forms) == 1
        assert len(h.upstream.requests) == 1


async def test_the_preflight_allows_the_token_header() -> None:
    async with campaign("memory", challenge="turnstile") as (h, _):
        response = await h.client.options(
            PATH,
            headers={
                "origin": SHOP,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, x-challenge-token",
            },
        )
        assert response.status_code == 204
        assert "x-challenge-token" in response.headers["access-control-allow-headers"]


def test_the_retry_after_of_a_far_opening_is_whole_seconds() -> None:
    from proxy.errors import TriggerNotActive
    from proxy.rewards.campaign import build_campaign
    from tests.config.test_campaign_settings import load

    (t,) = load({**scratch(), "starts_at": "2026-12-02T12:00:00.5Z"}).triggers
    built = build_campaign(t, "")
    assert built is not None
    with pytest.raises(TriggerNotActive) as info:
        built.check_open(NOW)
    assert dict(info.value.headers)[b"retry-after"] == b"1"
    assert json.loads(info.value.body("r"))["error"]["opens_at"] == "2026-12-02T12:00:00.500000Z"


# --- the demo's campaigns -------------------------------------------------------------------


async def test_the_demos_scratch_card_is_budgeted_and_opens_soon_after_the_start() -> None:
    from proxy.demo.run import OPENS_AFTER_SECONDS, demo_settings

    secret = "demo-session-secret-0123456789-abcdefghij"
    settings = demo_settings(8080, 8081, secret, "demo-key", "demo-workspace")
    async with open_harness(settings) as h:
        card = (await h.client.get("/v1/triggers/scratch-card")).json()["trigger"]
        assert card["coin_budget"] == {"coins": 1000, "period": "day"}
        assert card["customer_coins"] == {"coins": 300, "period": "day"}
        assert card["reward"]["wallet"]["coin_range"] == {"min": 5, "max": 100}
        assert card["schedule"]["open"] is False
        assert card["schedule"]["opens_at"] == card["schedule"]["starts_at"]
        token_ = mint_token([secret], {"customer_id": "demo-customer-1"})
        refused = await h.post("/v1/triggers/scratch-card", tok=token_)
        assert error_code(refused) == "trigger_not_active"
        assert 1 <= int(refused.headers["retry-after"]) <= OPENS_AFTER_SECONDS


def test_a_schedules_state_is_computed_once_until_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy.errors import TriggerNotActive
    from proxy.rewards import campaign as module
    from proxy.rewards.schedule import opening as original
    from tests.config.test_campaign_settings import load

    calls = []

    def counted(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, "opening", counted)
    (t,) = load(scratch(hours="09:00-17:00")).triggers
    built = module.build_campaign(t, "")
    assert built is not None
    for second in range(0, 5 * 3600, 600):  # 12:00 to 16:50 UTC: open throughout
        built.check_open(NOW + second)
    assert len(calls) == 1
    with pytest.raises(TriggerNotActive):
        built.check_open(NOW + 5 * 3600)  # 17:00: closed, computed again
    assert len(calls) == 2


async def test_the_providers_secret_is_never_logged_or_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    async with campaign("memory", challenge="turnstile") as (h, verifier):
        answers = [await scratch_card(h, **{"x-challenge-token": "pass-6"})]
        answers.append(await scratch_card(h, **{"x-challenge-token": "bad"}))
        verifier.fault = httpx.ConnectError("refused")
        answers.append(await scratch_card(h, **{"x-challenge-token": "pass-7"}))
        answers.append(await h.client.get("/metrics"))
    assert [a.status_code for a in answers] == [200, 403, 503, 200]
    assert all(SECRET not in a.text for a in answers)
    assert SECRET not in caplog.text


async def test_a_dry_run_of_an_offer_names_the_offer_and_issues_nothing() -> None:
    offer = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    settings = make_settings(
        triggers=[{"id": SCRATCH, "name": "scratch-card", "dry_run": True}
                  | {"override": {"offer": {"offer_id": offer}}}]
    )  # fmt: skip
    async with open_harness(settings) as h:
        data = (await h.post(PATH, tok=token())).json()["data"]
        assert data["offer_reward"] == {"offer_id": offer, "status": "dry_run"}
        assert "wallet_reward" not in data
        assert h.upstream.requests == []


async def test_a_provider_slower_than_the_timeout_fails_closed_in_time() -> None:
    import asyncio
    import time

    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(
        {**ENVIRON, "TRIGGER_PROXY_CHALLENGE_SECRET": SECRET},
        triggers=[scratch(challenge="turnstile")],
        challenge={
            "site_key": "site",
            "timeout_seconds": 0.3,
            "turnstile_verify_url": f"http://127.0.0.1:{port}/siteverify",
        },
    )
    try:
        async with open_harness(settings, real_transport=True) as h:
            started = time.monotonic()
            refused = await scratch_card(h, **{"x-challenge-token": "pass-8"})
            waited = time.monotonic() - started
    finally:
        server.close()
        for writer in held:
            writer.close()
    assert error_code(refused) == "challenge_unavailable"
    assert 0.25 < waited < 2


@pytest.mark.parametrize(
    ("status", "body", "paid"),
    [
        (200, b'{"data":{"wallet_reward":{"coins":7}}}', 7),
        (200, b'{"data":{"wallet_reward":{"coins":7}},"x":NaN}', 7),  # orjson refuses NaN
        (200, b'{"data":{"wallet_reward":{"coins":true}}}', 50),  # not a count: as reserved
        (200, b'{"data":{}}', 50),
        (200, b"not json", 50),
        (400, b'{"meta":{"status":"error"},"data":{}}', 0),  # Nector rewarded nothing
        (502, b'{"meta":{"status":"error"},"data":{}}', 50),  # nobody knows: the most stands
    ],
)
def test_the_coins_settled_are_those_nectors_answer_says_it_paid(
    status: int, body: bytes, paid: int
) -> None:
    assert paid_coins(status, body, 50) == paid
