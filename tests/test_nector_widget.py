"""Nector's own widget through the proxy: each call it really makes (tests/widget_calls.py),
answered as a customer (either session kind) or a signed-out visitor should see it."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from proxy.cli import main
from proxy.config.schema import READ_ROUTES
from proxy.demo.nector import NectorStandIn, StandInTrigger
from proxy.limits.memory_store import MemoryStore
from tests.helpers import (
    API_KEY,
    CHECKIN,
    ENVIRON,
    SPIN,
    WORKSPACE_ID,
    Harness,
    error_code,
    make_settings,
    open_harness,
    token,
)

P = "/api/v2/merchant/"
ALICE = "shopify-7001234"
NOT_LISTED = "44444444-5555-4666-8777-888888888888"
ALL_READS = {"routes": list(READ_ROUTES), "budget": "20/minute", "per_customer": "60/minute"}


def stand_in() -> NectorStandIn:
    nector = NectorStandIn(api_key=API_KEY, workspace_id=WORKSPACE_ID, seed=5)
    nector.add_trigger(StandInTrigger(SPIN, name="spin"))
    nector.add_trigger(StandInTrigger(CHECKIN, name="check-in"))
    nector.add_trigger(StandInTrigger(NOT_LISTED, name="not on the allow-list"))
    return nector


@contextlib.asynccontextmanager
async def widget(**sections: Any) -> AsyncIterator[tuple[Harness, NectorStandIn]]:
    nector = stand_in()
    sections.setdefault("reads", ALL_READS)
    async with open_harness(
        make_settings(**sections),
        store=MemoryStore(),
        transport=httpx.ASGITransport(app=nector.app),
    ) as h:
        yield h, nector


def bearer(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}", "x-source": "web", "x-apikey": "null"}


# --- 1, 2: the parameters the widget sends ---------------------------------------------------


async def test_offers_take_the_empty_tier_the_widget_sends() -> None:
    async with widget() as (h, _nector):
        answer = await h.client.get(
            P + "aggreegatedoffers?tier=&time_segment=evening", headers=bearer(token(ALICE))
        )
    assert answer.status_code == 200, answer.text
    assert "businessoffers" in answer.json()["data"]


async def test_the_referral_list_takes_event_and_passes_it_on() -> None:
    async with widget() as (h, nector):
        alice = nector.add_lead(customer_id=ALICE)
        query = "lead_id=x&page=1&limit=10&sort=created_at&sort_op=DESC&event=referral_create"
        answer = await h.client.get(P + "activities?" + query, headers=bearer(token(ALICE)))
    assert answer.status_code == 200, answer.text
    sent = dict(nector.calls[-1].query)
    assert sent["event"] == "referral_create"
    assert sent["lead_id"] == alice.id


async def test_a_read_still_refuses_what_could_name_another_customer() -> None:
    async with widget() as (h, _):
        answer = await h.client.get(
            P + "leads/x?referral_code=REFABC", headers=bearer(token(ALICE))
        )
    assert answer.status_code == 403
    assert error_code(answer) == "read_not_allowed"


# --- 3: the lead_id a customer_id session resolved --------------------------------------------


async def test_a_customer_id_session_is_rewarded_with_the_lead_id_the_proxy_resolved() -> None:
    async with widget() as (h, nector):
        alice = nector.add_lead(customer_id=ALICE)
        tok = token(ALICE)
        lead = (await h.client.get(P + f"leads/{alice.id}", headers=bearer(tok))).json()
        assert lead["data"]["item"]["_id"] == alice.id
        body = {"trigger_id": SPIN, "lead_id": alice.id}
        answer = await h.post(P + "activities", tok=tok, body=body)
        assert answer.status_code == 200, answer.text
        # Never another lead, even one the proxy knows of.
        bob = nector.add_lead(customer_id="shopify-7009999")
        other = await h.post(
            P + "activities", tok=tok, body={"trigger_id": SPIN, "lead_id": bob.id}
        )
        assert other.status_code == 403
        assert error_code(other) == "identity_mismatch"
    rewards = [
        (c.body["trigger_id"], c.body["customer_id"]) for c in nector.calls if c.method == "POST"
    ]
    assert rewards == [(SPIN, ALICE)]  # the session's own customer, not the body's lead


async def test_the_drop_in_looks_the_lead_up_once_when_it_has_none() -> None:
    async with widget() as (h, nector):
        alice = nector.add_lead(customer_id=ALICE)
        tok = token(ALICE)
        for _ in range(2):
            answer = await h.post(
                P + "activities", tok=tok, body={"trigger_id": CHECKIN, "lead_id": alice.id}
            )
            assert answer.status_code == 200, answer.text
    lookups = [c for c in nector.calls if c.method == "GET"]
    assert [dict(c.query) for c in lookups] == [{"customer_id": ALICE}]


# --- 6: two messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "code", "shopper"),
    [
        (P + "leads/x", {}, "missing_session", "Please sign in"),
        (
            P + "leads/x",
            {"authorization": "Bearer nope"},
            "invalid_session",
            "Please sign in again.",
        ),
        (P + "activities?foo=1", None, "invalid_query", "Something went wrong"),
    ],
)
async def test_a_refusal_says_one_thing_to_the_shopper_and_another_to_the_developer(
    path: str, headers: dict[str, str] | None, code: str, shopper: str
) -> None:
    async with widget() as (h, _):
        answer = await h.client.get(
            path, headers=bearer(token(ALICE)) if headers is None else headers
        )
    assert error_code(answer) == code
    body = answer.json()
    assert body["data"]["message"].startswith(shopper), body
    assert body["data"]["message"] != body["error"]["message"]


async def test_a_claimed_reward_tells_the_shopper_when_to_come_back() -> None:
    triggers = [{"id": CHECKIN, "per_customer": "1/day"}]
    async with widget(triggers=triggers) as (h, _nector):
        tok = token(ALICE)
        first = await h.post(P + "activities", tok=tok, body={"trigger_id": CHECKIN})
        assert first.status_code == 200, first.text
        again = await h.post(P + "activities", tok=tok, body={"trigger_id": CHECKIN})
    assert error_code(again) == "rate_limited"
    message = again.json()["data"]["message"]
    assert message.startswith("You have already claimed this today. Try again in "), message
    assert message.endswith(("hours.", "hour.")), message


def test_every_code_has_a_shopper_message_in_the_docs() -> None:
    from proxy.http.shopper import SHOPPER

    table = Path("docs/api.md").read_text()
    for code, text in SHOPPER.items():
        assert f"`{code}`" in table, code
        assert text.split("{")[0].strip() in table, (code, text)


# --- 7: ways to earn ------------------------------------------------------------------------


async def test_the_triggers_read_lists_only_allow_listed_triggers() -> None:
    async with widget() as (h, nector):
        nector.add_lead(customer_id=ALICE)
        tok = token(ALICE)
        query = (
            "page=1&limit=10&sort=created_at&sort_op=DESC&content_types=earn&content_types=social"
        )
        shared = (await h.client.get(P + "triggers?" + query, headers=bearer(tok))).json()
        mine = (await h.client.get(P + "triggers?lead_id=x&" + query, headers=bearer(tok))).json()
    for data in (shared["data"], mine["data"]):
        ids = {item["_id"] for item in data["items"]}
        assert ids == {SPIN, CHECKIN}, data
        assert data["count"] == 2


async def test_v1_triggers_lists_what_a_widget_may_show() -> None:
    async with widget() as (h, _):
        answer = await h.client.get("/v1/triggers")
    assert answer.status_code == 200, answer.text
    listed = answer.json()["triggers"]
    assert [t["id"] for t in listed] == [SPIN, CHECKIN, "3c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"]
    assert listed[0]["name"] == "spin-wheel"
    assert "limits" in listed[0]
    assert "public" in answer.headers["cache-control"]


# --- 8: GETs upstream carry no body headers --------------------------------------------------


async def test_a_read_over_the_real_transport_sends_no_body_headers() -> None:
    seen: list[dict[str, str]] = []

    async def details(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"meta": {"status": "success"}, "data": {}})

    server = web.Application()
    server.router.add_get("/api/v2/merchant/aggreegateddetails", details)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    upstream = {"url": f"http://127.0.0.1:{port}/api/v2/merchant/activities"}
    try:
        settings = make_settings(reads=ALL_READS, upstream=upstream)
        async with open_harness(settings, store=MemoryStore(), real_transport=True) as h:
            answer = await h.client.get(P + "aggreegateddetails", headers=bearer(token(ALICE)))
    finally:
        await runner.cleanup()
    assert answer.status_code == 200, answer.text
    assert "content-type" not in seen[0], seen[0]
    assert "content-length" not in seen[0], seen[0]
    assert "transfer-encoding" not in seen[0]


# --- 9: mint ---------------------------------------------------------------------------------


def _mint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, **env: str
) -> tuple[int, str, str]:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[upstream]\nurl = "https://platform.nector.io/api/v2/merchant/activities"\n'
        f'key_purpose = "storefront"\n[[triggers]]\nid = "{SPIN}"\n'
    )
    environ = {"TRIGGER_PROXY_SESSION_SECRETS": ENVIRON["TRIGGER_PROXY_SESSION_SECRETS"], **env}
    code = main(["mint", "--config", str(config), *args], environ)
    out, err = capsys.readouterr()
    return code, out, err


def test_mint_refuses_a_customer_id_token_under_a_storefront_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _mint(tmp_path, capsys, "--customer-id", ALICE)
    assert code == 2
    assert out == ""
    assert "customer_id" in err
    assert "--lead-id" in err
    assert len(err.strip().splitlines()) == 1


def test_mint_needs_only_the_session_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"TRIGGER_PROXY_API_KEY": "ak_" + "0" * 64, "TRIGGER_PROXY_WORKSPACE_ID": "shopify-x"}
    code, out, err = _mint(
        tmp_path, capsys, "--lead-id", "5d2f6a1e-8b3c-4d7e-9f10-2a3b4c5d6e7f", **env
    )
    assert code == 0, err
    assert out.count(".") == 2


# --- 5: signed-out visitors ------------------------------------------------------------------

VISITORS = {
    **ALL_READS,
    "public_routes": ["triggers", "aggreegateddetails"],
    "per_address": "2/minute",
}


async def test_a_visitor_reads_a_public_route_from_the_cache() -> None:
    async with widget(reads=VISITORS) as (h, nector):
        first = await h.client.get(P + "aggreegateddetails", headers={"x-apikey": "null"})
        again = await h.client.get(P + "aggreegateddetails", headers={"x-apikey": "null"})
    assert first.status_code == 200, first.text
    assert again.json() == first.json()
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert first.headers["vary"] == "Origin"
    assert len(nector.calls) == 1  # the second came from the cache


async def test_a_visitors_misses_are_limited_per_address() -> None:
    async with widget(reads=VISITORS) as (h, nector):
        answers = [
            await h.client.get(P + f"triggers?page={page}", headers={"x-apikey": "null"})
            for page in (1, 2, 3)
        ]
        # A cached answer costs nothing, past the limit too.
        cached = await h.client.get(P + "triggers?page=1")
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert error_code(answers[2]) == "rate_limited"
    assert cached.status_code == 200
    assert len(nector.calls) == 2


async def test_a_visitor_still_needs_a_session_for_the_rest() -> None:
    async with widget(reads=VISITORS) as (h, nector):
        offers = await h.client.get(P + "aggreegatedoffers?tier=&time_segment=night")
        mine = await h.client.get(P + "triggers?lead_id=x&content_types=earn")
        lead = await h.client.get(P + "leads/x")
    for answer in (offers, mine, lead):
        assert answer.status_code == 401, answer.text
        assert error_code(answer) == "missing_session"
    assert nector.calls == []


async def test_visitors_past_the_failure_limit_lock_no_one_out_of_their_address() -> None:
    limits = {"per_customer": "100/minute", "upstream": "1000/minute"}
    failures = {**limits, "per_ip_invalid_session": "2/minute"}
    async with widget(reads=VISITORS, limits=failures) as (h, nector):
        # An office or a carrier NAT: many signed-out visitors behind one address.
        visits = [await h.client.get(P + "aggreegateddetails") for _ in range(10)]
        reward = await h.post(P + "activities", tok=token(ALICE), body={"trigger_id": CHECKIN})
        # A forged token still counts, and past the limit every request gets the same 429.
        forged = [await h.client.get(P + "leads/x", headers=bearer("forged")) for _ in range(3)]
        visitor = await h.client.get(P + "aggreegateddetails")
    assert [v.status_code for v in visits] == [200] * 10
    assert reward.status_code == 200, reward.text
    assert [error_code(f) for f in forged] == ["invalid_session"] * 2 + ["rate_limited"]
    assert visitor.status_code == 429
    assert len([c for c in nector.calls if c.method == "GET"]) == 1


@pytest.mark.parametrize("path", ["activities", "offerredeems"])
async def test_the_failure_limit_on_a_claim_path_never_says_claimed(path: str) -> None:
    limits = {"per_customer": "100/minute", "upstream": "1000/minute"}
    async with widget(
        redemption=REDEEMING, limits={**limits, "per_ip_invalid_session": "1/minute"}
    ) as (
        h,
        _nector,
    ):
        body = {"trigger_id": CHECKIN} if path == "activities" else {"offer_id": OFFER_ID}
        forged = await h.post(P + path, tok="forged", body=body)
        limited = await h.post(P + path, tok=token(ALICE), body=body)
    assert error_code(forged) == "invalid_session"
    assert (limited.status_code, error_code(limited)) == (429, "rate_limited")
    assert limited.json()["error"]["message"] == "too many failed session checks"
    assert limited.json()["data"]["message"] == "Too many tries. Try again in 1 minute."


def test_check_config_refuses_a_customer_scoped_public_route() -> None:
    from proxy.config.schema import ConfigError

    with pytest.raises(ConfigError, match=r"reads\.public_routes"):
        make_settings(reads={**ALL_READS, "public_routes": ["wallettransactions"]})
    assert make_settings().reads.public_routes == ()


# --- 4: redemption ---------------------------------------------------------------------------

OFFER_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
OTHER_OFFER = "7e6d5c4b-3a29-4b18-8c07-f6e5d4c3b2a1"
REDEEM = P + "offerredeems"


def with_offers(nector: NectorStandIn) -> None:
    for offer_id in (OFFER_ID, OTHER_OFFER):
        nector.offers[offer_id] = {"_id": offer_id, "name": "10% off", "rule": {"coin_amount": 50}}


async def test_redemption_is_off_by_default_and_says_so() -> None:
    async with widget() as (h, nector):
        preflight = await h.client.options(
            REDEEM,
            headers={
                "origin": "https://shop.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-apikey,x-source,authorization",
            },
        )
        refused = await h.post(REDEEM, tok=token(ALICE), body={"offer_id": OFFER_ID, "step": 1})
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert refused.status_code == 403
    assert error_code(refused) == "redemption_off"
    assert refused.json()["data"]["message"] == "Redeeming coins is not available here yet."
    assert nector.calls == []


REDEEMING = {"enabled": True, "offers": [OFFER_ID], "per_customer": "2/day"}


async def test_a_customer_spends_its_own_coins_on_an_allow_listed_offer() -> None:
    async with widget(redemption=REDEEMING) as (h, nector):
        with_offers(nector)
        alice = nector.add_lead(customer_id=ALICE)
        alice.available = 120
        bob = nector.add_lead(customer_id="shopify-7009999")
        bob.available = 500
        tok = token(ALICE)
        body = {"offer_id": OFFER_ID, "lead_id": alice.id, "step": 1}
        first = await h.post(REDEEM, tok=tok, body=body, headers={"idempotency-key": "k1"})
        replay = await h.post(REDEEM, tok=tok, body=body, headers={"idempotency-key": "k1"})
        theirs = await h.post(REDEEM, tok=tok, body={**body, "lead_id": bob.id})
        other = await h.post(REDEEM, tok=tok, body={"offer_id": OTHER_OFFER, "step": 1})
        forged = await h.post(REDEEM, tok=tok, body={**body, "trace": {}})
    assert first.status_code == 200, first.text
    coupon = first.json()["data"]["coupon"]
    assert coupon["lead_id"] == alice.id
    assert coupon["_id"]
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert alice.available == 70
    assert bob.available == 500
    assert [c["_id"] for c in alice.coupons] == [coupon["_id"]]
    assert alice.transactions[-1]["operation"] == "dr"
    assert error_code(theirs) == "identity_mismatch"
    assert error_code(other) == "offer_not_allowed"
    assert other.json()["data"]["message"] == "This offer cannot be redeemed here."
    assert error_code(forged) == "forbidden_field"
    posts = [c.body for c in nector.calls if c.method == "POST"]
    assert posts == [{"offer_id": OFFER_ID, "lead_id": alice.id, "step": 1}]
    assert all(c.headers["x-apikey"] == API_KEY for c in nector.calls)


async def test_short_coins_and_the_customers_limit_are_refused_in_nectors_envelope() -> None:
    async with widget(redemption=REDEEMING) as (h, nector):
        with_offers(nector)
        alice = nector.add_lead(customer_id=ALICE)
        alice.available = 60
        tok = token(ALICE)
        body = {"offer_id": OFFER_ID, "step": 1}
        spent = await h.post(REDEEM, tok=tok, body=body)
        short = await h.post(REDEEM, tok=tok, body=body)
        over = await h.post(REDEEM, tok=tok, body=body)
    assert spent.status_code == 200, spent.text
    assert short.status_code == 422, short.text
    assert short.json()["meta"]["status"] == "error"
    assert "coins" in short.json()["data"]["message"]
    assert alice.available == 10
    assert error_code(over) == "rate_limited"
    assert over.json()["data"]["message"].startswith("You have already claimed this")


def test_redemption_config_names_offers_or_all() -> None:
    from proxy.config.schema import ConfigError

    with pytest.raises(ConfigError, match=r"redemption\.offers"):
        make_settings(redemption={"enabled": True})
    with pytest.raises(ConfigError, match=r"redemption\.offers"):
        make_settings(redemption={"enabled": True, "offers": ["not-a-uuid"]})
    assert make_settings(redemption={"enabled": True, "offers": ["all"]}).redemption.enabled
    assert not make_settings().redemption.enabled


# --- what the widget renders from ---------------------------------------------------------------


async def test_the_stand_in_answers_with_what_the_widget_renders() -> None:
    async with widget() as (h, nector):
        alice = nector.add_lead(customer_id=ALICE)
        tok = token(ALICE)
        await h.post(P + "activities", tok=tok, body={"trigger_id": SPIN, "lead_id": alice.id})
        details = (await h.client.get(P + "aggreegateddetails", headers=bearer(tok))).json()
        earn = await h.client.get(P + "triggers?lead_id=x&content_types=earn", headers=bearer(tok))
    (config,) = details["data"]["websdkinfos"]["items"]
    assert config["business_color"]
    data = earn.json()["data"]
    content = next(i["content"] for i in data["items"] if i["_id"] == SPIN)
    assert content["execute_after"] == "link_click"
    assert content["redirect_link"].startswith("https://")
    assert {"parent_id": SPIN, "count": 1} in [
        {"parent_id": a["parent_id"], "count": a["count"]} for a in data["activities"]
    ]


def test_the_browser_client_words_refusals_as_the_proxy_does() -> None:
    # The wheel and the demo page show err.shopperMessage: on /v1/ paths (no envelope) the
    # client's own table, which must say what data.message says on Nector's paths.
    from proxy.http.shopper import GENERAL, SHOPPER

    script = Path("proxy/static/trigger-proxy.js").read_text()
    table = script.split("export const SHOPPER = {", 1)[1].split("};", 1)[0]
    words = dict(re.findall(r'^\s+(\w+): ("[^"]*"),$', table, flags=re.M))
    assert {code: json.loads(text) for code, text in words.items()} == SHOPPER
    assert f"export const GENERAL = {json.dumps(GENERAL)};" in script
    wheel = Path("proxy/static/trigger-proxy-widget.js").read_text()  # the wheel's base
    assert "err.shopperMessage" in wheel
    assert "err.shopperMessage" in Path("proxy/demo/static/index.html").read_text()


def test_the_docs_list_the_widgets_calls_as_the_tests_make_them() -> None:
    from tests.widget_calls import CALLS

    doc = Path("docs/nector-widget.md").read_text()
    for call in CALLS:
        assert f"`{call.method} {call.path}`" in doc, call
    assert "docs/nector-widget.md" in Path("README.md").read_text()


def test_the_new_routes_have_their_own_log_label() -> None:
    from proxy.http.paths import route_label
    from proxy.reads.routes import read_of

    assert route_label(REDEEM, read_of) == REDEEM
    assert route_label("/v1/triggers", read_of) == "/v1/triggers"
