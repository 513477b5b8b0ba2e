"""Shopify storefronts with no backend, through the whole app (ASGI, Nector's stand-in behind):
App Proxy requests under /shopify/ and theme digests traded at POST /v1/sessions/shopify."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from proxy.config.schema import READ_ROUTES
from proxy.demo.nector import NectorStandIn, StandInTrigger
from proxy.demo.shopify import CUSTOMER_COOKIE, ShopStandIn
from proxy.identity.shopify import sign_app_proxy, theme_digest
from tests.helpers import (
    API_KEY,
    ENVIRON,
    SPIN,
    WORKSPACE_ID,
    Harness,
    error_code,
    make_settings,
    open_harness,
    token,
)
from tests.servers import ProxyProcess, StandInServer, ThreadedServer, proxy_config, stand_in_for

SHOP = "tinyshop.myshopify.com"
STOREFRONT = "https://tinyshop.example.com"  # the shop's own domain, as the browser sees it
APP_SECRET = "shpss_0123456789abcdef0123456789abcdef"
DIGEST_SECRET = "the-theme-digest-secret-of-32-characters-Q7"
CUSTOMER = "7001234"
NECTOR_CUSTOMER = f"shopify-{CUSTOMER}"
SHOPIFY_ENV = {
    **ENVIRON,
    "TRIGGER_PROXY_SHOPIFY_APP_SECRETS": APP_SECRET,
    "TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS": DIGEST_SECRET,
}
SHOPIFY = {"shop": SHOP, "app_proxy": True, "digest_max_age_seconds": 3600}


def signed(
    path: str,
    customer: str = CUSTOMER,
    *,
    shop: str = SHOP,
    timestamp: float | None = None,
    secret: str = APP_SECRET,
    query: list[tuple[str, str]] | None = None,
) -> str:
    """``path`` under /shopify with the query Shopify adds, as its App Proxy forwards it."""
    params = [
        *(query or []),
        ("shop", shop),
        ("logged_in_customer_id", customer),
        ("path_prefix", "/apps/rewards"),
        ("timestamp", str(int(time.time() if timestamp is None else timestamp))),
    ]
    params.append(("signature", sign_app_proxy(secret, params)))
    return f"/shopify{path}?{urlencode(params)}"


def nector() -> NectorStandIn:
    stand_in = NectorStandIn(api_key=API_KEY, workspace_id=WORKSPACE_ID, seed=5)
    stand_in.add_trigger(StandInTrigger(SPIN, allow_override=True, name="spin"))
    return stand_in


@contextlib.asynccontextmanager
async def shop(
    environ: dict[str, str] | None = None, **sections: Any
) -> AsyncIterator[tuple[Harness, NectorStandIn]]:
    stand_in = nector()
    sections.setdefault("shopify", SHOPIFY)
    sections.setdefault("reads", {"routes": list(READ_ROUTES)})
    settings = make_settings(environ or SHOPIFY_ENV, **sections)
    async with open_harness(settings, transport=httpx.ASGITransport(app=stand_in.app)) as h:
        yield h, stand_in


def rewards(stand_in: NectorStandIn) -> list[dict[str, Any]]:
    return [c.body for c in stand_in.calls if c.method == "POST"]


# --- App Proxy requests ------------------------------------------------------------------


async def test_a_signed_request_rewards_the_shops_signed_in_customer() -> None:
    async with shop() as (h, stand_in):
        response = await h.client.post(signed("/v1/triggers/spin-wheel"))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert "ratelimit-remaining" in response.headers
        assert [b["customer_id"] for b in rewards(stand_in)] == [NECTOR_CUSTOMER]
        assert "access-control-allow-origin" not in response.headers


async def test_shopifys_parameters_never_reach_nector() -> None:
    async with shop() as (h, stand_in):
        await h.client.post(signed("/v1/triggers/spin-wheel"))
        call = stand_in.calls[-1]
        assert set(call.body) <= {"trigger_id", "customer_id", "trace"}
        assert not {"shop", "signature", "timestamp"} & {k for k, _ in call.query}


async def test_a_bearer_token_or_cookie_for_another_customer_is_ignored() -> None:
    other = token("customer-someone-else")
    headers = {"authorization": f"Bearer {other}", "cookie": f"trigger_session={other}"}
    async with shop() as (h, stand_in):
        ok = await h.client.post(signed("/v1/triggers/spin-wheel"), headers=headers)
        assert ok.status_code == 200
        assert [b["customer_id"] for b in rewards(stand_in)] == [NECTOR_CUSTOMER]
        unsigned = await h.client.post("/shopify/v1/triggers/spin-wheel", headers=headers)
        assert (unsigned.status_code, error_code(unsigned)) == (401, "invalid_session")
        assert len(rewards(stand_in)) == 1


# Each query is signed when its test runs: at collection its timestamp would be minutes old
# by then in a long run, and every case would be refused as expired.
@pytest.mark.parametrize(
    ("request_path", "status", "code"),
    [
        (lambda: signed("/v1/triggers/spin-wheel", secret="shpss_another-apps-secret-0000000"),
         401, "invalid_session"),
        (lambda: signed("/v1/triggers/spin-wheel") + "&shop=" + SHOP, 401, "invalid_session"),
        (lambda: signed("/v1/triggers/spin-wheel", timestamp=time.time() - 3600), 401,
         "expired_session"),
        (lambda: signed("/v1/triggers/spin-wheel", customer=""), 401, "missing_session"),
        (lambda: signed("/v1/triggers/spin-wheel", shop="othershop.myshopify.com"), 403,
         "shop_not_allowed"),
    ],
    ids=["signature", "twice", "expired", "signed-out", "shop"],
)  # fmt: skip
async def test_each_refusal_reaches_no_one(
    request_path: Callable[[], str], status: int, code: str
) -> None:
    async with shop() as (h, stand_in):
        response = await h.client.post(request_path())
        assert (response.status_code, error_code(response)) == (status, code)
        assert stand_in.calls == []


async def test_the_app_proxy_is_off_unless_configured() -> None:
    async with shop(shopify={"shop": SHOP}) as (h, stand_in):
        response = await h.client.post(signed("/v1/triggers/spin-wheel"))
        assert (response.status_code, error_code(response)) == (404, "not_found")
        assert stand_in.calls == []


async def test_only_a_storefronts_routes_are_served_under_shopify() -> None:
    async with shop(environ={**SHOPIFY_ENV, "TRIGGER_PROXY_MINT_KEY": "m" * 40}) as (h, _):
        for path in ("/healthz", "/openapi.json", "/v1/sessions", "/metrics"):
            response = await h.client.get(signed(path))
            assert (response.status_code, error_code(response)) == (404, "not_found"), path


async def test_the_client_scripts_are_served_under_shopify() -> None:
    async with shop() as (h, _):
        scripts = ("trigger-proxy.js", "trigger-proxy-widget.js", "trigger-proxy-wheel.js")
        for name in (*scripts, "trigger-proxy-scratch.js"):
            response = await h.client.get(signed(f"/client/{name}"))
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/javascript")
            assert response.content == (await h.client.get(f"/client/{name}")).content


async def test_what_a_widget_may_show_needs_no_signed_in_customer() -> None:
    async with shop() as (h, _):
        response = await h.client.get(signed("/v1/triggers/spin-wheel", customer=""))
        assert response.status_code == 200
        assert response.json()["trigger"]["name"] == "spin-wheel"


async def test_a_read_is_the_signed_customers_and_shopifys_parameters_are_no_query() -> None:
    async with shop() as (h, stand_in):
        await h.client.post(signed("/v1/triggers/spin-wheel"))  # the customer now exists
        lead = stand_in.find_lead(customer_id=NECTOR_CUSTOMER)
        assert lead is not None
        query = [("page", "1"), ("limit", "10"), ("lead_id", "someone-else")]
        response = await h.client.get(signed("/api/v2/merchant/wallettransactions", query=query))
        assert response.status_code == 200, response.text
        reads = [c for c in stand_in.calls if c.method == "GET"]
        last = dict(reads[-1].query)
        assert last["lead_id"] == lead.id
        assert not {"shop", "signature", "timestamp", "path_prefix"} & set(last)


async def test_a_drop_in_body_naming_another_customer_is_refused() -> None:
    async with shop() as (h, stand_in):
        response = await h.client.post(
            signed("/api/v2/merchant/activities"),
            json={"trigger_id": SPIN, "customer_id": "shopify-7009999"},
        )
        assert (response.status_code, error_code(response)) == (403, "identity_mismatch")
        assert response.json()["meta"]["code"] == 403  # Nector's envelope on its own path
        ok = await h.client.post(
            signed("/api/v2/merchant/activities"),
            json={"trigger_id": SPIN, "customer_id": NECTOR_CUSTOMER},
        )
        assert ok.status_code == 200
        assert [b["customer_id"] for b in rewards(stand_in)] == [NECTOR_CUSTOMER]


async def test_a_retry_with_a_fresh_signature_replays_its_idempotency_key() -> None:
    async with shop() as (h, stand_in):
        key = {"idempotency-key": "spin-once-7001234"}
        first = await h.client.post(signed("/v1/triggers/spin-wheel"), headers=key)
        again = await h.client.post(
            signed("/v1/triggers/spin-wheel", timestamp=time.time() - 5), headers=key
        )
        assert first.status_code == again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert len(rewards(stand_in)) == 1


async def test_the_customers_limits_hold_across_signatures() -> None:
    async with shop() as (h, stand_in):
        answers = [
            (await h.client.post(signed("/v1/triggers/spin-wheel", timestamp=time.time() - i)))
            for i in range(4)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]  # 3/minute
        assert error_code(answers[-1]) == "rate_limited"
        assert len(rewards(stand_in)) == 3


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        (STOREFRONT, True),  # the host Shopify forwarded for
        (f"https://{SHOP}", True),
        ("https://shop.example.com", True),  # listed in cors.allow_origins
        ("https://evil.example", False),
    ],
)
async def test_an_origin_must_be_the_shops_own(origin: str | None, allowed: bool) -> None:
    headers = {"x-forwarded-host": STOREFRONT.removeprefix("https://")}
    if origin is not None:
        headers["origin"] = origin
    async with shop() as (h, stand_in):
        response = await h.client.post(signed("/v1/triggers/spin-wheel"), headers=headers)
        if allowed:
            assert response.status_code == 200
        else:
            assert (response.status_code, error_code(response)) == (403, "origin_not_allowed")
            assert stand_in.calls == []


async def test_forged_signatures_count_toward_the_address_limit_but_no_one_signed_in_does() -> None:
    limits = {"per_customer": "100/minute", "upstream": "1000/minute"}
    async with shop(limits={**limits, "per_ip_invalid_session": "2/minute"}) as (h, _):
        for _ in range(5):  # shoppers who are not signed in, all from Shopify's addresses
            anonymous = await h.client.post(signed("/v1/triggers/spin-wheel", customer=""))
            assert error_code(anonymous) == "missing_session"
        forged = signed("/v1/triggers/spin-wheel", secret="shpss_forged-000000000000000000")
        codes = [error_code(await h.client.post(forged)) for _ in range(3)]
        assert codes == ["invalid_session", "invalid_session", "rate_limited"]


async def test_a_signed_query_with_a_repeated_customer_is_refused_but_locks_no_one_out() -> None:
    # A storefront link that adds its own logged_in_customer_id reaches the proxy signed by
    # Shopify, from Shopify's address: refused each time, never counted as a forgery.
    repeated = signed("/v1/triggers/spin-wheel", query=[("logged_in_customer_id", "999")])
    async with shop() as (h, stand_in):
        answers = [await h.client.post(repeated) for _ in range(61)]
        assert {(a.status_code, error_code(a)) for a in answers} == {(401, "invalid_session")}
        good = await h.client.post(signed("/v1/triggers/spin-wheel"))
        assert good.status_code == 200, good.text
        assert [b["customer_id"] for b in rewards(stand_in)] == [NECTOR_CUSTOMER]


async def test_a_repeated_parameter_shopify_did_not_sign_still_counts_as_a_forgery() -> None:
    limits = {"per_customer": "100/minute", "upstream": "1000/minute"}
    async with shop(limits={**limits, "per_ip_invalid_session": "2/minute"}) as (h, _):
        forged = signed("/v1/triggers/spin-wheel") + "&logged_in_customer_id=999"
        codes = [error_code(await h.client.post(forged)) for _ in range(3)]
        assert codes == ["invalid_session", "invalid_session", "rate_limited"]


# --- theme digests -----------------------------------------------------------------------


def digest_body(
    customer: str = CUSTOMER,
    *,
    ts: int | None = None,
    shop: str = SHOP,
    secret: str = DIGEST_SECRET,
) -> dict[str, Any]:
    ts = int(time.time()) if ts is None else ts
    return {
        "shop": shop,
        "customer_id": customer,
        "ts": ts,
        "digest": theme_digest(secret, shop, customer, ts),
    }


async def test_a_theme_digest_is_traded_for_a_session_of_its_customer() -> None:
    async with shop() as (h, stand_in):
        before = int(time.time())
        response = await h.client.post("/v1/sessions/shopify", json=digest_body())
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        data = response.json()
        assert set(data) == {"token", "expires_at"}
        assert before + 3600 <= data["expires_at"] <= int(time.time()) + 3600
        spin = await h.spin(data["token"])
        assert spin.status_code == 200
        assert [b["customer_id"] for b in rewards(stand_in)] == [NECTOR_CUSTOMER]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (lambda: {**digest_body(), "customer_id": "7009999"}, 401, "invalid_session"),
        (
            lambda: digest_body(secret="not-the-theme-digest-secret-at-all-00"),
            401,
            "invalid_session",
        ),
        (lambda: digest_body(ts=int(time.time()) - 3700), 401, "expired_session"),
        (lambda: digest_body(ts=int(time.time()) + 200), 401, "expired_session"),
        (lambda: digest_body(shop="othershop.myshopify.com"), 403, "shop_not_allowed"),
        (lambda: {**digest_body(), "customer_id": "shopify-7001234"}, 400, "invalid_body"),
        (lambda: {**digest_body(), "extra": 1}, 400, "invalid_body"),
        (lambda: {k: v for k, v in digest_body().items() if k != "ts"}, 400, "invalid_body"),
        (lambda: {**digest_body(), "ts": "soon"}, 400, "invalid_body"),
    ],
    ids=["customer", "secret", "old", "ahead", "shop", "not-numeric", "extra", "no-ts", "ts"],
)
async def test_each_bad_digest_is_refused(
    body: Callable[[], dict[str, Any]], status: int, code: str
) -> None:
    async with shop() as (h, _):  # each body is made as its test runs: see above
        response = await h.client.post("/v1/sessions/shopify", json=body())
        assert (response.status_code, error_code(response)) == (status, code)


async def test_a_digest_rendered_as_data_attributes_may_carry_strings() -> None:
    body = digest_body()
    async with shop() as (h, _):
        response = await h.client.post("/v1/sessions/shopify", json={**body, "ts": str(body["ts"])})
        assert response.status_code == 200


async def test_digests_are_off_without_their_secret() -> None:
    environ = {k: v for k, v in SHOPIFY_ENV.items() if "DIGEST" not in k}
    async with shop(environ=environ) as (h, _):
        response = await h.client.post("/v1/sessions/shopify", json=digest_body())
        assert (response.status_code, error_code(response)) == (404, "not_found")


async def test_failed_digests_count_toward_the_address_limit() -> None:
    limits = {"per_customer": "100/minute", "upstream": "1000/minute"}
    async with shop(limits={**limits, "per_ip_invalid_session": "2/minute"}) as (h, _):
        wrong = {**digest_body(), "digest": "0" * 64}
        codes = [
            error_code(await h.client.post("/v1/sessions/shopify", json=wrong)) for _ in range(3)
        ]
        assert codes == ["invalid_session", "invalid_session", "rate_limited"]
        right = await h.client.post("/v1/sessions/shopify", json=digest_body())
        assert (right.status_code, error_code(right)) == (429, "rate_limited")


async def test_forged_tokens_and_wrong_digests_count_against_one_address_limit() -> None:
    limits = {"per_customer": "100/minute", "upstream": "1000/minute"}
    forged = {"authorization": "Bearer forged.token.signature"}
    wrong = {**digest_body(), "digest": "0" * 64}
    async with shop(limits={**limits, "per_ip_invalid_session": "2/minute"}) as (h, _):
        first = await h.client.post("/v1/triggers/spin-wheel", headers=forged)
        second = await h.client.post("/v1/sessions/shopify", json=wrong)
        assert [error_code(first), error_code(second)] == ["invalid_session", "invalid_session"]
        trade = await h.client.post("/v1/sessions/shopify", json=digest_body())
        assert (trade.status_code, error_code(trade)) == (429, "rate_limited")
        spin = await h.client.post("/v1/triggers/spin-wheel", headers=forged)
        assert (spin.status_code, error_code(spin)) == (429, "rate_limited")


# --- through `trigger-proxy serve`, behind a stand-in shop ----------------------------------


@pytest.mark.slow
def test_through_serve_a_shops_app_proxy_and_a_theme_digest_reward_its_customer(
    tmp_path: Path,
) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        config = proxy_config(nector.url, shopify=SHOPIFY)
        with ProxyProcess(tmp_path, config, environ=SHOPIFY_ENV) as proxy:
            shop_front = ShopStandIn(
                shop=SHOP,
                app_secret=APP_SECRET,
                digest_secret=DIGEST_SECRET,
                transport=httpx.AsyncHTTPTransport(),
                proxy_url=proxy.base_url,
            )
            with ThreadedServer(shop_front.app) as front:
                signed_in = httpx.Client(base_url=front.origin, cookies={CUSTOMER_COOKIE: CUSTOMER})
                with signed_in as client:
                    spin = client.post("/apps/rewards/v1/triggers/spin-wheel")
                    assert spin.status_code == 200, spin.text
                    assert "ratelimit-remaining" in spin.headers
                    script = client.get("/apps/rewards/client/trigger-proxy.js")
                    assert "export function createClient" in script.text
                anonymous = httpx.post(f"{front.origin}/apps/rewards/v1/triggers/spin-wheel")
                assert (anonymous.status_code, error_code(anonymous)) == (401, "missing_session")
            # The theme digest, from the storefront's origin (listed in cors.allow_origins).
            storefront = {"origin": "https://shop.example.com"}
            preflight = httpx.options(
                f"{proxy.base_url}/v1/sessions/shopify",
                headers={**storefront, "access-control-request-method": "POST"},
            )
            assert preflight.status_code == 204
            assert "POST" in preflight.headers["access-control-allow-methods"]
            traded = httpx.post(
                f"{proxy.base_url}/v1/sessions/shopify", json=digest_body(), headers=storefront
            )
            assert traded.status_code == 200, traded.text
            assert traded.headers["access-control-allow-origin"] == storefront["origin"]
            session = traded.json()["token"]
            spin = httpx.post(
                f"{proxy.base_url}/v1/triggers/spin-wheel",
                headers={"authorization": f"Bearer {session}"},
            )
            assert spin.status_code == 200, spin.text
            assert [c.body["customer_id"] for c in nector.stand_in.calls] == [NECTOR_CUSTOMER] * 2
            assert not any(
                secret in proxy.log_path.read_text() for secret in (APP_SECRET, DIGEST_SECRET)
            )
