"""Nector's own widget's calls (tests/widget_calls.py) from a real browser, cross-origin, with
the widget's headers, through a real proxy to the stand-in: with a lead_id session, a
customer_id session and signed out. Each answers as a shopper should see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from proxy.config.schema import READ_ROUTES
from tests.widget_calls import CALLS

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser

OFFER_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
CUSTOMER_ID = "shopify-7001234"
LEAD_ID = "5d2f6a1e-8b3c-4d7e-9f10-2a3b4c5d6e7f"
PUBLIC = ["triggers", "aggreegateddetails", "aggreegatedoffers", "offers", "entities"]

# The widget's way of calling (src/client/axios_client.js): accept, content-type, x-apikey
# ("null" with no key in the page), x-source, and here the session, added by the merchant.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>widget</title><link rel="icon" href="data:,"></head>
<body><ol id="log"></ol>
<script type="module">
const calls = CALLS_JSON;
const params = new URLSearchParams(location.search);
const base = params.get("base"), token = params.get("token") || "";
const values = {trigger: params.get("trigger"), offer: params.get("offer"), entity: "demo-store",
  customer: params.get("customer") || "", lead: params.get("lead") || "none", coupon: "none"};
values.lead_or_uuid = values.lead !== "none" ? values.lead : crypto.randomUUID();
values.customer_query = values.customer ? "customer_id=" + values.customer : "";
const fill = (text) => text.replace(/\\{(\\w+)\\}/g, (_, k) => values[k]);
const results = [];
for (const call of calls) {
  const headers = {"accept": "application/json", "content-type": "application/json",
                   "x-apikey": "null", "x-source": "web"};
  if (token) headers["authorization"] = "Bearer " + token;
  const init = {method: call.method, headers};
  if (call.body) init.body = fill(JSON.stringify(call.body));
  const response = await fetch(base + "/api/v2/merchant/" + fill(call.path), init);
  const answer = await response.json();
  if (call.name === "lead" && response.ok) values.lead = answer.data.item._id;
  if (call.name === "redeem" && response.ok) values.coupon = answer.data.coupon._id;
  const shown = answer.meta.status === "error" ? answer.data.message : "ok";
  results.push({name: call.name, status: response.status, shown});
  const item = document.createElement("li");
  item.textContent = call.name + ": " + response.status + " " + shown;
  document.querySelector("#log").append(item);
}
window.results = results;
</script></body></html>
"""


def run_widget(browser: Browser, shop_origin: str, query: str) -> list[dict[str, Any]]:
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(f"{shop_origin}/?{query}")
    tab.wait_for_function("() => window.results !== undefined", timeout=20_000)
    results: list[dict[str, Any]] = tab.evaluate("() => window.results")
    tab.close()
    assert errors == []
    return results


def test_nectors_widget_calls_answer_for_both_sessions_and_signed_out(
    browser: Browser, tmp_path: Path
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from tests.helpers import API_KEY, SPIN, token
    from tests.servers import (
        ProxyProcess,
        StandInServer,
        ThreadedServer,
        proxy_config,
        stand_in_for,
    )

    calls = [call._asdict() for call in CALLS]

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.replace("CALLS_JSON", json.dumps(calls)))

    shop = ThreadedServer(Starlette(routes=[Route("/", page)]))
    stand_in = stand_in_for(SPIN)
    stand_in.offers[OFFER_ID] = {"_id": OFFER_ID, "name": "10% off", "rule": {"coin_amount": 20}}
    stand_in.add_lead(lead_id=LEAD_ID).available = 100
    stand_in.add_lead(customer_id=CUSTOMER_ID).available = 100
    with StandInServer(stand_in) as nector, shop:
        config = proxy_config(
            nector.url,
            cors={"allow_origins": [shop.origin]},
            reads={
                "routes": list(READ_ROUTES),
                "public_routes": PUBLIC,
                "per_customer": "60/minute",
            },
            redemption={"enabled": True, "offers": [OFFER_ID]},
        )
        with ProxyProcess(tmp_path, config) as proxy:
            common = f"base={proxy.base_url}&trigger={SPIN}&offer={OFFER_ID}"
            by_lead = run_widget(
                browser, shop.origin, f"{common}&lead={LEAD_ID}&token={token(lead_id=LEAD_ID)}"
            )
            by_customer = run_widget(
                browser,
                shop.origin,
                f"{common}&customer={CUSTOMER_ID}&token={token(CUSTOMER_ID)}",
            )
            signed_out = run_widget(browser, shop.origin, common)
    names = [call.name for call in CALLS]
    for results in (by_lead, by_customer):
        assert [r["name"] for r in results] == names
        assert [(r["name"], r["status"], r["shown"]) for r in results] == [
            (name, 200, "ok") for name in names
        ]
    expected = [
        (c.name, 200, "ok") if c.signed_out else (c.name, 401, "Please sign in to continue.")
        for c in CALLS
    ]
    assert [(r["name"], r["status"], r["shown"]) for r in signed_out] == expected
    # Both customers spent their own coins once, and got their coupon.
    lead = stand_in.find_lead(lead_id=LEAD_ID)
    customer = stand_in.find_lead(customer_id=CUSTOMER_ID)
    assert lead is not None
    assert customer is not None
    reward, redeemed = lead.transactions  # the wheel's coins, then the offer's price
    assert (reward["operation"], redeemed["operation"]) == ("cr", "dr")
    assert lead.available == 100 + reward["amount"] - 20
    assert len(lead.coupons) == len(customer.coupons) == 1
    assert all(call.headers["x-apikey"] == API_KEY for call in stand_in.calls)
    assert all("x-apikey-algo" not in call.headers for call in stand_in.calls)
