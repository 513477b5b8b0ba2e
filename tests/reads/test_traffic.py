"""Reads under real traffic (docs/api.md, "Reads under real traffic"): a customer's own answers
are kept for that customer alone and dropped by their reward; no one customer can spend the
reads' slice for everyone; a read that cannot be fetched answers its last copy or an honest
refusal; cache headers never let a shared cache keep a signed-in answer.

The red team's findings each have a test here: 15 (one greedy customer), 16 (a slice against
a budget over each period), 18 (ids that are not one plain segment), 19 (cache headers).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from proxy.config.settings import ConfigError
from proxy.demo.nector import NectorStandIn
from tests.helpers import Upstream, error_code, make_settings, open_harness, token
from tests.reads.test_reads import (
    ALL_READS,
    OFFER_ID,
    Message,
    P,
    get,
    no_body,
    read_scope,
    reads_harness,
    reads_of,
    stand_in,
)


@pytest.fixture(params=["memory", "redis"])
def backing(request: pytest.FixtureRequest) -> str:
    """The limit store the kept answers live beside: the process's memory, or Redis."""
    return str(request.param)


ALICE, BOB, MALLORY = "customer-alice-01", "customer-bob-0001", "customer-mallory1"


def lead_balance(answer: httpx.Response) -> int:
    assert answer.status_code == 200, answer.text
    return int(answer.json()["data"]["item"]["available"])


# --- finding 15: one greedy customer ------------------------------------------------------


@pytest.mark.slow  # waits for the cache to go stale
async def test_finding_15_stale_refreshes_are_charged_to_the_customer_asking() -> None:
    # Ten pages of a workspace-wide read, filled by ten shoppers, go stale; then one customer
    # asks for every one of them. Each refresh is a call to Nector, and it is theirs to pay: past
    # their own per_customer they get the stale copies, and the slice is left for the others.
    nector = stand_in()
    reads = {**ALL_READS, "budget": "20/minute", "per_customer": "5/minute", "cache_seconds": 1}
    async with reads_harness(nector=nector, limits={"upstream": "60/minute"}, reads=reads) as (
        h,
        _,
    ):
        pages = [P + f"triggers?content_types=earn&page={n}&limit=10" for n in range(1, 11)]
        for n, page in enumerate(pages):
            assert (await get(h, page, token(f"customer-shop-{n:03d}"))).status_code == 200
        await asyncio.sleep(1.1)
        greedy = [await get(h, page, token(MALLORY)) for page in pages]
        await asyncio.sleep(0.05)  # the refreshes that were admitted have landed
        nector.add_lead(customer_id=BOB)
        bob = await get(h, P + "leads/me", token(BOB))
        assert bob.status_code == 200, bob.text
        assert {r.status_code for r in greedy} == {200}
        assert {r.headers["x-cache"] for r in greedy} == {"STALE"}
    # Ten fills, five refreshes Mallory paid for, Bob's lead.
    assert len(reads_of(nector)) == 16


async def test_finding_15_a_customer_cycling_pages_spends_only_their_own_reads() -> None:
    # On the defaults: a slice of 20 calls a minute, of which one customer may spend 10.
    nector = stand_in()
    defaults = {"routes": ALL_READS["routes"]}
    async with reads_harness(nector=nector, limits={"upstream": "60/minute"}, reads=defaults) as (
        h,
        _,
    ):
        answers = [
            await get(h, P + f"triggers?content_types=earn&page={n}", token(MALLORY))
            for n in range(1, 25)
        ]
        assert [r.status_code for r in answers] == [200] * 10 + [429] * 14
        nector.add_lead(customer_id=BOB)
        assert (await get(h, P + "leads/me", token(BOB))).status_code == 200


def test_page_and_limit_are_bounded() -> None:
    from proxy.errors import InvalidQuery
    from proxy.reads.routes import parse

    parse("triggers", b"page=100&limit=100")
    for query in (b"page=101", b"page=0", b"limit=101", b"limit=0", b"page=99999"):
        with pytest.raises(InvalidQuery):
            parse("triggers", query)


# --- finding 16: a slice against the budget over each period -------------------------------


@pytest.mark.parametrize(
    ("budget", "slice_"),
    [("10/minute", "100/hour"), ("10/minute", "20/minute"), ("100/hour", "10/minute")],
)
def test_finding_16_a_slice_must_stay_under_the_budget_over_each_period(
    budget: str, slice_: str
) -> None:
    # "100/hour" is less than "10/minute" on average, but all of it may land in one minute.
    with pytest.raises(ConfigError, match=r"reads\.budget"):
        make_settings(limits={"upstream": budget}, reads={"routes": ["offers"], "budget": slice_})


def test_a_slice_under_the_budget_in_every_period_is_accepted() -> None:
    for budget, slice_ in (("60/minute", "20/minute"), ("1000/hour", "10/minute")):
        make_settings(limits={"upstream": budget}, reads={"routes": ["offers"], "budget": slice_})


# --- finding 18: ids that are not one plain segment ----------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "coupons/.",
        "coupons/..",
        "offers/..",
        "offers/.",
        "entities/..",
        "offers/a/b",  # as a server decodes offers/a%2Fb
        "offers/",
        "coupons/",
        "leads/..",
    ],
)
async def test_finding_18_an_id_that_is_not_one_plain_segment_is_refused(path: str) -> None:
    # Driven as a server hands it over: the path percent-decoded, its dot segments left alone
    # (httpx would resolve them before sending).
    nector = stand_in()
    nector.add_lead(customer_id=ALICE)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async with reads_harness(nector=nector) as (h, _):
        await h.app(read_scope(P + path, token(ALICE)), no_body, send)
    assert sent[0]["status"] == 400, sent[1]["body"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "invalid_query"
    assert reads_of(nector) == []


# --- finding 19: cache headers --------------------------------------------------------------


async def test_finding_19_a_read_with_a_session_is_private() -> None:
    nector = stand_in()
    nector.add_lead(customer_id=ALICE)
    async with reads_harness(nector=nector) as (h, _):
        for path in ("aggreegateddetails", f"offers/{OFFER_ID}", "triggers", "leads/me"):
            for _ in range(2):  # the fill, then the cached copy
                answer = await get(h, P + path, token(ALICE))
                assert answer.status_code == 200, answer.text
                control = answer.headers["cache-control"]
                assert control.startswith("private"), (path, control)
                assert answer.headers.get_list("vary") == ["Origin"], path


async def test_finding_19_the_public_trigger_view_varies_on_origin_once() -> None:
    cors = {"allow_origins": ["https://shop.example"]}
    async with open_harness(make_settings(cors=cors)) as h:
        bare = await h.client.get("/v1/triggers/spin-wheel")
        listed = await h.client.get(
            "/v1/triggers/spin-wheel", headers={"origin": "https://shop.example"}
        )
    for answer in (bare, listed):
        assert answer.status_code == 200
        assert answer.headers["cache-control"].startswith("public")
        assert answer.headers.get_list("vary") == ["Origin"]


async def test_the_client_scripts_vary_on_origin_once() -> None:
    cors = {"allow_origins": ["https://shop.example"]}
    async with open_harness(make_settings(cors=cors)) as h:
        for path in ("/client/trigger-proxy.js", "/client/trigger-proxy-wheel.js"):
            for headers in ({}, {"origin": "https://shop.example"}):
                answer = await h.client.get(path, headers=headers)
                assert answer.status_code == 200
                assert answer.headers["cache-control"].startswith("public")
                assert answer.headers.get_list("vary") == ["Origin"], (path, headers)


async def test_a_read_from_a_listed_origin_varies_on_origin_once() -> None:
    cors = {"allow_origins": ["https://shop.example"]}
    async with reads_harness(cors=cors) as (h, _):
        answer = await get(h, P + "aggreegateddetails", token(ALICE), origin="https://shop.example")
    assert answer.headers.get_list("vary") == ["Origin"]
    assert "x-cache" in answer.headers["access-control-expose-headers"]


# --- kept answers ---------------------------------------------------------------------------


async def test_a_customers_answers_are_kept_for_that_customer_alone(backing: str) -> None:
    nector = stand_in()
    alice_lead, bob_lead = nector.add_lead(customer_id=ALICE), nector.add_lead(customer_id=BOB)
    alice_lead.available, bob_lead.available = 7, 12
    async with reads_harness(backing, nector) as (h, _):
        first = await get(h, P + "leads/me", token(ALICE))
        again = await get(h, P + "leads/me", token(ALICE))
        bob = await get(h, P + "leads/me", token(BOB))
        history = [await get(h, P + "wallettransactions?page=1", token(ALICE)) for _ in range(2)]
    assert [lead_balance(r) for r in (first, again, bob)] == [7, 7, 12]
    assert [r.headers["x-cache"] for r in (first, again, bob)] == ["MISS", "HIT", "MISS"]
    assert [r.headers["x-cache"] for r in history] == ["MISS", "HIT"]
    assert {r.headers["cache-control"] for r in (first, again, *history)} == {"private, no-store"}
    # Alice's lead, Bob's lead, Alice's history (her lead id was learnt from her lead).
    assert len(reads_of(nector)) == 3


async def test_a_reward_through_the_proxy_drops_that_customers_kept_answers(
    backing: str,
) -> None:
    nector = stand_in()
    nector.add_lead(customer_id=ALICE)
    nector.add_lead(customer_id=BOB)
    async with reads_harness(backing, nector) as (h, _):
        before = lead_balance(await get(h, P + "leads/me", token(ALICE)))
        bob_before = await get(h, P + "leads/me", token(BOB))
        spin = await h.spin(token(ALICE))
        assert spin.status_code == 200, spin.text
        won = spin.json()["data"]["wallet_reward"]["balance"]
        after = await get(h, P + "leads/me", token(ALICE))
        bob_after = await get(h, P + "leads/me", token(BOB))
    assert before == 0
    assert after.headers["x-cache"] == "MISS"
    assert lead_balance(after) == won > 0
    assert bob_after.headers["x-cache"] == "HIT"  # only the spinner's answers are dropped
    assert bob_after.content == bob_before.content


async def test_a_redemption_through_the_proxy_drops_that_customers_kept_answers() -> None:
    nector = stand_in()
    nector.offers[OFFER_ID]["rule"] = {"coin_amount": 50}
    alice = nector.add_lead(customer_id=ALICE)
    alice.available = 120
    redemption = {"enabled": True, "offers": [OFFER_ID]}
    async with reads_harness(nector=nector, redemption=redemption) as (h, _):
        before = lead_balance(await get(h, P + "leads/me", token(ALICE)))
        body = {"offer_id": OFFER_ID, "step": 1}
        spent = await h.post(P + "offerredeems", tok=token(ALICE), body=body)
        assert spent.status_code == 200, spent.text
        after = await get(h, P + "leads/me", token(ALICE))
    assert (before, lead_balance(after)) == (120, 70)
    assert after.headers["x-cache"] == "MISS"


async def test_replicas_on_one_redis_share_kept_answers_and_forget_them() -> None:
    from tests.redis_util import shared_redis_store

    nector = stand_in()
    nector.add_lead(customer_id=ALICE)
    transport = httpx.ASGITransport(app=nector.app)
    settings = make_settings(reads=ALL_READS)
    store_one, store_two = shared_redis_store(), shared_redis_store()
    store_two._prefix = store_one._prefix  # two replicas of one deployment
    async with (
        open_harness(settings, store=store_one, transport=transport) as one,
        open_harness(settings, store=store_two, transport=transport) as two,
    ):
        first = await get(one, P + "leads/me", token(ALICE))
        shared = await get(two, P + "leads/me", token(ALICE))
        assert shared.headers["x-cache"] == "HIT"
        assert (await two.spin(token(ALICE))).status_code == 200
        fresh = await get(one, P + "leads/me", token(ALICE))
    assert fresh.headers["x-cache"] == "MISS"
    assert lead_balance(fresh) > lead_balance(first)
    assert len(reads_of(nector)) == 2


async def test_customer_cache_seconds_zero_keeps_nothing_fresh() -> None:
    nector = stand_in()
    lead = nector.add_lead(customer_id=ALICE)
    async with reads_harness(nector=nector, reads={**ALL_READS, "customer_cache_seconds": 0}) as (
        h,
        _,
    ):
        for coins in (0, 7, 12):
            lead.available = coins
            answer = await get(h, P + "leads/me", token(ALICE))
            assert lead_balance(answer) == coins
            assert answer.headers["x-cache"] == "MISS"
    assert len(reads_of(nector)) == 3


# --- honest degradation -----------------------------------------------------------------


def failing_after(count: int, nector: NectorStandIn) -> Upstream:
    """Nector's stand-in for ``count`` reads, then failing every call with a 503."""
    seen: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        if len(seen) > count:
            return httpx.Response(503, json={"meta": {"status": "error"}})
        return httpx.Response(200, json=_lead_body(nector))

    return Upstream(answer=answer)


def _lead_body(nector: NectorStandIn) -> dict[str, Any]:
    lead = nector.find_lead(customer_id=ALICE)
    assert lead is not None
    return {"meta": {"status": "success"}, "data": {"item": {"_id": lead.id, "available": 5}}}


async def test_a_kept_answer_stands_in_stale_when_nector_fails() -> None:
    nector = stand_in()
    nector.add_lead(customer_id=ALICE)
    upstream = failing_after(1, nector)
    reads = {**ALL_READS, "customer_cache_seconds": 0}  # every read asks Nector
    async with open_harness(make_settings(reads=reads), upstream=upstream) as h:
        first = await get(h, P + "leads/me", token(ALICE))
        stale = await get(h, P + "leads/me", token(ALICE))
        other = await get(h, P + "leads/me", token(BOB))  # has no copy of its own
    assert first.headers["x-cache"] == "MISS"
    assert stale.status_code == 200
    assert stale.content == first.content
    assert stale.headers["x-cache"] == "STALE"
    assert int(stale.headers["age"]) >= 0
    assert other.status_code >= 500
    # A refusal is a read's answer too: nobody's copy, and it varies by Origin.
    assert other.headers["x-cache"] == "MISS"
    assert other.headers["vary"] == "Origin"


async def test_a_refused_read_says_miss_and_varies_by_origin() -> None:
    async with open_harness(make_settings(reads=ALL_READS)) as h:
        for answer in (
            await get(h, P + "leads/me", None),  # no session
            await get(h, P + "triggers?page=0", token(ALICE)),  # a bad query
        ):
            assert answer.status_code in (400, 401), answer.text
            assert answer.headers["x-cache"] == "MISS"
            assert answer.headers["vary"] == "Origin"


async def test_with_no_copy_a_spent_slice_is_503_with_retry_after() -> None:
    nector = stand_in()
    for who in (ALICE, BOB):
        nector.add_lead(customer_id=who)
    async with reads_harness(
        nector=nector, limits={"upstream": "6/minute"}, reads={**ALL_READS, "budget": "1/minute"}
    ) as (h, _):
        alice = await get(h, P + "leads/me", token(ALICE))
        bob = await get(h, P + "leads/me", token(BOB))
    assert alice.headers["x-cache"] == "MISS"
    assert bob.status_code == 503
    assert error_code(bob) == "upstream_busy"
    assert "retry-after" in bob.headers


# --- what the reads can serve ---------------------------------------------------------------


def test_check_config_prints_what_the_reads_can_serve() -> None:
    from proxy.cli import summary
    from proxy.reads.capacity import capacity

    routes = ["leads", "wallettransactions", "coupons", "triggers"]
    settings = make_settings(
        limits={"upstream": "60/minute"},
        reads={
            "routes": routes,
            "budget": "20/minute",
            "per_customer": "10/minute",
            "cache_seconds": 60,
            "customer_cache_seconds": 30,
        },
    )
    c = capacity(settings.reads, settings.limits.upstream)
    # 20 calls a minute, one of them the ways to earn; 3 answers a view, each kept 30 s: one
    # customer opening 5 pages a minute costs 3 * 2 calls, so the 19 left serve 3 such
    # customers, 15 views; views from new customers cost 3 calls each, 6 of them.
    assert (c.calls, c.workspace_calls, c.reads_per_view) == (20, 1, 3)
    assert (c.page_views(1), c.page_views(5)) == (6, 15)
    text = summary(settings)
    assert "reads can serve 20 upstream calls a minute" in text
    assert "about 6 page views a minute from customers opening one page, 15 from" in text
    assert "one customer may spend 10 calls a minute (reads.per_customer), 50% of the slice" in text
    off = make_settings(reads={"routes": routes, "customer_cache_seconds": 0})
    assert capacity(off.reads, off.limits.upstream).page_views(5) == 6  # 5 views: 15 calls
