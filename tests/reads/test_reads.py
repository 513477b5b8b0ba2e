"""Customer-scoped reads (docs/api.md, "Reads"), against the Nector stand-in.

No request reads another customer's data, whatever it puts in the path or the query; the
workspace-wide reads are cached and filled once however many ask at once; reads never take the
budget rewards need; Redis and memory alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.schema import READ_ROUTES
from proxy.demo.nector import NectorStandIn, StandInTrigger
from proxy.limits.memory_store import MemoryStore
from tests.helpers import (
    API_KEY,
    CHECKIN,
    ENVIRON,
    SHOP,
    SPIN,
    WORKSPACE_ID,
    Harness,
    Upstream,
    error_code,
    make_settings,
    open_harness,
    token,
    tried,
)
from tests.redis_util import shared_redis_store

P = "/api/v2/merchant/"
ALICE, MALLORY_VICTIM = "customer-alice-01", "customer-victim-1"
ALL_READS = {"routes": list(READ_ROUTES), "budget": "20/minute", "per_customer": "60/minute"}
OFFER_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
LEAD_SECRET = "the-storefront-key-signing-secret-0123456789"


def stand_in() -> NectorStandIn:
    nector = NectorStandIn(api_key=API_KEY, workspace_id=WORKSPACE_ID, seed=3)
    nector.add_trigger(StandInTrigger(SPIN, allow_override=True, name="spin"))
    nector.add_trigger(StandInTrigger(CHECKIN, allow_override=True, name="check-in"))
    nector.offers[OFFER_ID] = {"_id": OFFER_ID, "name": "10% off"}
    return nector


@contextlib.asynccontextmanager
async def reads_harness(
    kind: str = "memory",
    nector: NectorStandIn | None = None,
    *,
    redis_timeout: float = 1.0,
    **sections: Any,
) -> AsyncIterator[tuple[Harness, NectorStandIn]]:
    nector = nector or stand_in()
    store = MemoryStore() if kind == "memory" else shared_redis_store(redis_timeout)
    sections.setdefault("reads", ALL_READS)
    async with open_harness(
        make_settings(**sections), store=store, transport=httpx.ASGITransport(app=nector.app)
    ) as h:
        yield h, nector


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def reads_of(nector: NectorStandIn) -> list[tuple[str, dict[str, list[str]]]]:
    """The reads that reached the stand-in: path and query."""
    out = []
    for call in nector.calls:
        if call.method == "GET":
            query: dict[str, list[str]] = {}
            for key, value in call.query:
                query.setdefault(key, []).append(value)
            out.append((call.path, query))
    return out


async def get(h: Harness, path: str, tok: str | None, **headers: str) -> httpx.Response:
    if tok is not None:
        headers["authorization"] = f"Bearer {tok}"
    return await h.client.get(path, headers=headers)


async def test_a_workspace_read_is_cached_per_source() -> None:
    # Nector's answer is to a call naming its x-source: one source's must not stand for another's.
    def answer(request: httpx.Request) -> httpx.Response:
        source = request.headers["x-source"]
        return httpx.Response(200, json={"meta": {"status": "success"}, "data": {"from": source}})

    upstream = Upstream(answer=answer)
    async with open_harness(make_settings(reads=ALL_READS), upstream=upstream) as h:
        seen = [
            (await get(h, P + "aggreegateddetails", token(ALICE), **{"x-source": source})).json()
            for source in ("web", "mobile", "web", "mobile")
        ]
    assert [body["data"]["from"] for body in seen] == ["web", "mobile", "web", "mobile"]
    assert [r.headers["x-source"] for r in upstream.requests] == ["web", "mobile"]


# --- whose data -----------------------------------------------------------------------------


async def test_a_customer_reads_its_own_lead_balance_history_and_coupons() -> None:
    async with reads_harness(
        triggers=[{"id": CHECKIN, "override": {"offer": {"offer_id": OFFER_ID}}}]
    ) as (h, nector):
        alice = token(ALICE)
        assert (
            await h.client.post(
                f"/v1/triggers/{CHECKIN}", headers={"authorization": f"Bearer {alice}"}
            )
        ).status_code == 200
        lead = nector.find_lead(customer_id=ALICE)
        assert lead is not None
        me = await get(h, P + "leads/anything?customer_id=someone-else", alice)
        assert me.status_code == 200, me.text
        assert me.json()["data"]["item"]["_id"] == lead.id
        assert me.headers["cache-control"] == "private, no-store"
        history = await get(
            h, P + "wallettransactions?page=1&limit=5&sort=created_at&sort_op=DESC", alice
        )
        assert history.json()["data"]["count"] == 1
        coupons = (await get(h, P + "coupons?lead_id=not-mine", alice)).json()["data"]
        assert coupons["count"] == 1
        coupon_id = coupons["items"][0]["_id"]
        assert (await get(h, P + f"coupons/{coupon_id}", alice)).status_code == 200
        # Another customer asking for that coupon learns nothing of it.
        bob = token("customer-bob-001")
        await h.client.post(f"/v1/triggers/{CHECKIN}", headers={"authorization": f"Bearer {bob}"})
        theirs = await get(h, P + f"coupons/{coupon_id}", bob)
        assert theirs.status_code == 404
        assert error_code(theirs) == "not_found"
    paths = [path for path, _ in reads_of(nector)]
    # The customer id was looked up once, by the lead read itself; the lists used its lead.
    assert paths.count(f"{P}leads/{ALICE}") == 1
    for path, query in reads_of(nector):
        if path.endswith(("wallettransactions", "coupons")):
            assert query["lead_id"] == [lead.id]


async def test_a_lead_session_reads_by_its_lead_id_and_never_looks_up() -> None:
    nector = stand_in()
    lead = nector.add_lead(lead_id="4c5b7a9e-3d2f-4e1a-8b6c-9d0e1f2a3b4c")
    async with reads_harness(nector=nector) as (h, _):
        tok = token(None, lead_id=lead.id)
        response = await get(h, P + "leads/somebody?customer_id=x", tok)
        assert response.json()["data"]["item"]["_id"] == lead.id
        assert (await get(h, P + "activities?lead_id=x", tok)).status_code == 200
    assert [(p, q) for p, q in reads_of(nector)] == [
        (f"{P}leads/{lead.id}", {}),
        (f"{P}activities", {"lead_id": [lead.id]}),
    ]


async def test_lookups_by_another_customers_key_are_refused() -> None:
    async with reads_harness() as (h, nector):
        for key in ("referral_code", "email", "mobile"):
            response = await get(h, P + f"leads/x?{key}=someone", token(ALICE))
            assert response.status_code == 403
            assert error_code(response) == "read_not_allowed"
        unknown = await get(h, P + "wallettransactions?amount=5", token(ALICE))
        assert unknown.status_code == 400
        assert error_code(unknown) == "invalid_query"
    assert reads_of(nector) == []


async def test_reads_need_a_session_and_an_enabled_route() -> None:
    async with reads_harness(reads={"routes": ["offers"]}) as (h, nector):
        assert error_code(await get(h, P + "aggreegateddetails", None)) == "missing_session"
        off = await get(h, P + "leads/x", token(ALICE))
        assert off.status_code == 403
        assert error_code(off) == "read_not_allowed"
        assert error_code(await get(h, P + "nothing-here", token(ALICE))) == "not_found"
        assert (await h.client.delete(P + "offers/x")).status_code == 405
    assert reads_of(nector) == []


# Another customer's ids, in every place a client could put them.
VICTIM_IDS = ["customer-victim-1", "4c5b7a9e-3d2f-4e1a-8b6c-9d0e1f2a3b4c"]
CUSTOMER_ROUTES = ["leads/{id}", "wallettransactions", "coupons", "activities", "triggers"]
KEYS = ["lead_id", "customer_id", "page", "limit", "sort", "sort_op", "content_types"]
query_pairs = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["lead_id", "customer_id"]), st.sampled_from(VICTIM_IDS)),
        st.sampled_from(
            [
                ("page", "1"),
                ("limit", "20"),
                ("sort", "created_at"),
                ("sort_op", "DESC"),
                ("content_types", "earn"),
            ]
        ),
        st.tuples(st.sampled_from(KEYS), st.sampled_from([*VICTIM_IDS, ""])),
    ),
    max_size=6,
    unique_by=lambda pair: pair[0],
)


class ReadClient:
    """The app and the stand-in, driven from one event loop across hypothesis's examples."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.context = reads_harness(
            reads={**ALL_READS, "budget": "100000/minute", "per_customer": "100000/minute"},
            limits={"upstream": "1000000/minute"},
        )
        self.h, self.nector = self.runner.run(self.context.__aenter__())
        victim = self.nector.add_lead(customer_id=VICTIM_IDS[0], lead_id=VICTIM_IDS[1])
        victim.available = 999
        self.alice = self.nector.add_lead(customer_id=ALICE)

    def close(self) -> None:
        self.runner.run(self.context.__aexit__(None, None, None))
        self.runner.close()


@pytest.fixture(scope="module")
def read_client() -> Iterator[ReadClient]:
    client = ReadClient()
    try:
        yield client
    finally:
        client.close()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(CUSTOMER_ROUTES),
    path_id=st.sampled_from(VICTIM_IDS),
    pairs=query_pairs,
    as_lead=st.booleans(),
)
def test_no_query_or_path_reaches_another_customers_data(
    read_client: ReadClient, route: str, path_id: str, pairs: list[tuple[str, str]], as_lead: bool
) -> None:
    c = read_client
    tok = token(None, lead_id=c.alice.id) if as_lead else token(ALICE)
    before = len(c.nector.calls)
    path = P + route.replace("{id}", path_id) + ("?" + urlencode(pairs) if pairs else "")
    response = c.runner.run(get(c.h, path, tok))
    tried("reads: another customer's ids", f"{route} {response.status_code}")
    assert response.status_code in (200, 400, 403), response.text
    own = {c.alice.id, ALICE}
    for call in c.nector.calls[before:]:
        assert not any(victim in call.path for victim in VICTIM_IDS), call.path
        for key, value in call.query:
            if key in ("lead_id", "customer_id"):
                assert value in own, call.query
    if response.status_code == 200:
        text = response.text
        assert not any(victim in text for victim in VICTIM_IDS)
        assert '"available":999' not in text
    else:
        assert error_code(response) in ("invalid_query", "read_not_allowed")


# --- caching and budgets --------------------------------------------------------------------

Message = MutableMapping[str, Any]


def read_scope(path: str, tok: str) -> Message:
    """An ASGI scope for a GET of ``path`` with a bearer token, to drive the app directly."""
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {tok}".encode())],
        "client": ("203.0.113.9", 40000),
    }


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_a_thousand_concurrent_page_views_make_one_upstream_call(store_kind: str) -> None:
    nector = stand_in()
    nector.delay_seconds = 0.2  # every view arrives while the first call is on its way
    # A thousand views in one process keep the loop busy for a while: the store's operations
    # wait that long, which is not what this test is about.
    async with reads_harness(store_kind, nector, redis_timeout=10.0) as (h, _):
        views = [
            get(h, P + "triggers?content_types=earn&page=1&limit=10", token(f"customer-{i:05d}"))
            for i in range(1000)
        ]
        answers = await asyncio.gather(*views)
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        assert answers[0].headers["cache-control"].startswith("private, max-age=")
        # The same read in another parameter order is the same cached answer.
        again = await get(h, P + "triggers?limit=10&page=1&content_types=earn", token(ALICE))
        assert again.content == answers[0].content
    assert len(reads_of(nector)) == 1


async def test_reads_never_take_the_budget_rewards_need(store_kind: str) -> None:
    async with reads_harness(
        store_kind,
        limits={"upstream": "6/minute"},
        reads={**ALL_READS, "budget": "2/minute"},
    ) as (h, nector):
        customers = [token(f"customer-{i:05d}") for i in range(6)]
        for i in range(6):
            nector.add_lead(customer_id=f"customer-{i:05d}")
        lists = [await get(h, P + "wallettransactions", c) for c in customers[:4]]
        # A customer_id session looks its lead up first: the first list spends the slice of 2.
        assert [r.status_code for r in lists] == [200, 503, 503, 503]
        assert error_code(lists[1]) == "upstream_busy"
        assert "retry-after" in lists[1].headers
        spins = [
            await h.client.post("/v1/triggers/spin-wheel", headers={"authorization": f"Bearer {c}"})
            for c in customers
        ]
        assert [r.status_code for r in spins] == [200, 200, 200, 200, 503, 503]


async def test_a_stale_answer_stands_in_when_the_budget_is_spent() -> None:
    nector = stand_in()
    async with reads_harness(
        nector=nector, reads={**ALL_READS, "budget": "1/minute", "cache_seconds": 1}
    ) as (h, _):
        first = await get(h, P + "aggreegateddetails", token(ALICE))
        assert first.status_code == 200
        await asyncio.sleep(1.1)
        stale = await get(h, P + "aggreegateddetails", token(ALICE))
        assert stale.status_code == 200
        assert stale.content == first.content
        assert stale.headers["cache-control"] == "private, max-age=0"
        await asyncio.sleep(0.05)  # the background refresh was refused by the budget
        nothing = await get(h, P + "aggreegatedoffers", token(ALICE))
        assert nothing.status_code == 503
        assert error_code(nothing) == "upstream_busy"
    assert len(reads_of(nector)) == 1


async def test_a_stale_answer_is_served_while_one_refresh_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="trigger_proxy")
    nector = stand_in()
    async with reads_harness(nector=nector, reads={**ALL_READS, "cache_seconds": 1}) as (h, _):
        first = await get(h, P + "aggreegatedoffers", token(ALICE))
        nector.offers["new-offer"] = {"_id": "new-offer", "name": "Free shipping"}
        await asyncio.sleep(1.1)
        # A client slow to take its answer: the refresh lands before its access line is written.
        sent: list[Message] = []

        async def slow_send(message: Message) -> None:
            sent.append(message)
            await asyncio.sleep(0.1)

        slow = h.app(read_scope(P + "aggreegatedoffers", token(ALICE)), no_body, slow_send)
        views = [get(h, P + "aggreegatedoffers", token(ALICE)) for _ in range(4)]
        stale = await asyncio.gather(*views, slow)
        assert sent[1]["body"] == first.content
        # Answered at once, as they were.
        assert {r.content for r in stale if r is not None} == {first.content}
        await asyncio.sleep(0.1)  # the one refresh has landed
        fresh = await get(h, P + "aggreegatedoffers", token(ALICE))
        assert b"Free shipping" in fresh.content
    assert len(reads_of(nector)) == 2
    # Each stale answer's access line says so; the refresh, done after them, is in none.
    lines = [vars(r)["fields"] for r in caplog.records if r.name == "trigger_proxy.access"]
    assert [line.get("decision") for line in lines] == ["admitted", *["stale"] * 5, "cached"]
    assert [("upstream_status" in line) for line in lines] == [True, *[False] * 6]


def test_the_reads_budget_must_be_a_slice_of_the_workspaces() -> None:
    from proxy.config.settings import ConfigError

    with pytest.raises(ConfigError, match=r"reads\.budget"):
        make_settings(
            limits={"upstream": "20/minute"}, reads={"routes": ["offers"], "budget": "20/minute"}
        )
    with pytest.raises(ConfigError, match=r"reads\.routes"):
        make_settings(reads={"routes": ["wallets"]})


async def test_a_read_relays_nectors_body_with_the_credentials_scrubbed() -> None:
    nector = stand_in()
    nector.offers[OFFER_ID]["name"] = f"key {API_KEY} in workspace {WORKSPACE_ID}"
    async with reads_harness(nector=nector) as (h, _):
        response = await get(h, P + f"offers/{OFFER_ID}", token(ALICE))
    assert response.status_code == 200
    assert response.json()["data"]["item"]["name"] == "key [redacted] in workspace [redacted]"


async def test_customer_scoped_answers_are_not_kept_with_customer_cache_seconds_0() -> None:
    nector = stand_in()
    lead = nector.add_lead(customer_id=ALICE)
    reads = {**ALL_READS, "customer_cache_seconds": 0}
    async with reads_harness(nector=nector, reads=reads) as (h, _):
        for coins in (0, 7, 12):  # each read sees the balance as it is now
            lead.available = coins
            answer = await get(h, P + "leads/x", token(ALICE))
            assert answer.status_code == 200
            assert answer.json()["data"]["item"]["available"] == coins
    assert len(reads_of(nector)) == 3


async def test_a_customers_reads_are_limited(store_kind: str) -> None:
    reads = {**ALL_READS, "per_customer": "2/minute", "customer_cache_seconds": 0}
    async with reads_harness(store_kind, reads=reads) as (h, _):
        answers = [await get(h, P + "leads/x", token(ALICE)) for _ in range(3)]
        assert [r.status_code for r in answers] == [404, 404, 429]  # no lead yet, then limited
        assert error_code(answers[2]) == "rate_limited"
        assert answers[2].headers["ratelimit-limit"] == "2"


async def test_preflight_and_head_of_a_read() -> None:
    async with reads_harness() as (h, _):
        preflight = await h.client.options(
            P + "leads/x",
            headers={
                "origin": SHOP,
                "access-control-request-method": "GET",
                "access-control-request-headers": "x-apikey, x-source, authorization",
            },
        )
        assert preflight.status_code == 204
        assert "GET" in preflight.headers["access-control-allow-methods"]
        head = await h.client.head(
            P + "offers/" + OFFER_ID, headers={"authorization": f"Bearer {token(ALICE)}"}
        )
        assert head.status_code == 200
        assert head.content == b""


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from([*CUSTOMER_ROUTES, "coupons/{id}", "offers/{id}", "aggreegatedoffers"]),
    pairs=st.lists(
        st.tuples(
            st.sampled_from([*KEYS, "tier", "time_segment", "email"]) | st.text(max_size=8),
            st.text(max_size=12) | st.integers(-5, 10**7).map(str),
        ),
        max_size=5,
    ),
)
def test_any_query_gets_a_well_formed_answer(
    read_client: ReadClient, route: str, pairs: list[tuple[str, str]]
) -> None:
    c = read_client
    path = P + route.replace("{id}", "x1") + "?" + urlencode(pairs)
    response = c.runner.run(get(c.h, path, token(ALICE)))
    tried("reads: any query", str(response.status_code))
    assert response.status_code in (200, 400, 403, 404), response.text
    if response.status_code != 200 and "error" in response.json():
        assert error_code(response) in ("invalid_query", "read_not_allowed", "not_found")


@pytest.mark.parametrize(
    "query",
    [b"page=%C2%B2", b"limit=%D9%A3", b"page=" + b"9" * 5000, b"page=0", b"limit=101", b"x=%FF"],
)
def test_a_bad_number_or_escape_is_invalid_query_not_a_crash(query: bytes) -> None:
    from proxy.errors import InvalidQuery
    from proxy.reads.routes import parse

    with pytest.raises(InvalidQuery):
        parse("wallettransactions", query)


def test_query_normal_form_is_the_cache_key() -> None:
    from proxy.reads.routes import parse

    a = parse("triggers", b"page=1&content_types=social&content_types=earn")
    b = parse("triggers", b"content_types=earn&page=1&content_types=social")
    assert a == b
    assert dict(parse_qsl(urlencode(a.params)))["page"] == "1"


# --- transports, keys and replicas ----------------------------------------------------------


async def test_the_cookie_serves_a_read_from_the_proxys_own_page_only() -> None:
    async with reads_harness() as (h, nector):
        h.client.cookies.set("trigger_session", token(ALICE))
        same = await h.client.get(
            P + "aggreegateddetails", headers={"sec-fetch-site": "same-origin"}
        )
        assert same.status_code == 200
        # Another site's page (an <img>, a <script src>) gets no session out of the cookie.
        other = await h.client.get(
            P + "aggreegateddetails", headers={"sec-fetch-site": "cross-site"}
        )
        assert other.status_code == 403
        assert error_code(other) == "origin_not_allowed"
        bare = await h.client.get(P + "aggreegateddetails")
        assert bare.status_code == 403
        assert error_code(bare) == "origin_not_allowed"
        # A write keeps the Origin rule: Fetch Metadata alone does not spend a reward.
        spin = await h.client.post(
            "/v1/triggers/spin-wheel", headers={"sec-fetch-site": "same-origin"}
        )
        assert spin.status_code == 403
        assert error_code(spin) == "origin_not_allowed"
    assert len(reads_of(nector)) == 1


async def test_a_storefront_key_reads_with_a_lead_token_for_the_sessions_lead() -> None:
    nector = stand_in()
    nector.lead_token_secret = LEAD_SECRET
    lead = nector.add_lead(lead_id="4c5b7a9e-3d2f-4e1a-8b6c-9d0e1f2a3b4c")
    environ = {**ENVIRON, "TRIGGER_PROXY_LEAD_TOKEN_SECRET": LEAD_SECRET}
    settings = make_settings(environ, upstream={"key_purpose": "storefront"}, reads=ALL_READS)
    async with open_harness(settings, transport=httpx.ASGITransport(app=nector.app)) as h:
        tok = token(None, lead_id=lead.id)
        for path in ("leads/x", "wallettransactions", "triggers?lead_id=x", "aggreegateddetails"):
            response = await get(h, P + path, tok)
            assert response.status_code == 200, (path, response.text)
        refused = await get(h, P + "leads/x", token(ALICE))  # Nector's proof of a customer id
        assert refused.status_code == 403
        assert error_code(refused) == "lead_session_required"
    scoped = [c for c in nector.calls if "aggreegateddetails" not in c.path]
    assert all("x-leadtoken" in c.headers for c in scoped)
    assert len(scoped) == 3


async def test_replicas_on_one_redis_fill_a_read_once() -> None:
    nector = stand_in()
    nector.delay_seconds = 0.2
    first, second = shared_redis_store(), shared_redis_store()
    second._prefix = first._prefix  # two replicas of one deployment
    transport = httpx.ASGITransport(app=nector.app)
    settings = make_settings(reads=ALL_READS)
    async with (
        open_harness(settings, store=first, transport=transport) as a,
        open_harness(settings, store=second, transport=transport) as b,
    ):
        answers = await asyncio.gather(
            *(
                get(h, P + "aggreegatedoffers?tier=gold", token(f"customer-{i:05d}"))
                for i, h in enumerate([a, b] * 20)
            )
        )
        assert {r.status_code for r in answers} == {200}
    assert len(reads_of(nector)) == 1
