"""The demo page in a real browser: Debian's Chromium driven by Playwright.

Log in, spin, see the reward and the balance; spin again, be refused and see the countdown.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browsers import ARTIFACTS
from tests.demo_process import DemoProcess
from tests.helpers import tried

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def number(text: str) -> int:
    found = re.search(r"\d+", text)
    assert found is not None, text
    return int(found.group())


def test_the_demo_storefront_in_a_real_browser(browser: Browser, tmp_path: Path) -> None:
    """The demo as a user starts it: sign in, spin, and see the balance, the coupon and the
    history read back through the proxy; check in once a day. The browser talks to the demo's
    own origin only, and no Nector key reaches it."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with DemoProcess(tmp_path / "demo.log") as demo:
        page = browser.new_page()
        errors: list[str] = []
        seen: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: seen.append(request.url))
        page.goto(demo.url)
        wheel = page.locator("trigger-proxy-wheel")
        expect(wheel).to_have_attribute("state", "signed-out")

        page.fill("#customer", "no")
        page.click("#login")
        expect(page.locator("#login-error")).to_have_text(
            "Use 8 to 64 characters: letters, digits, or . _ @ -"
        )
        page.fill("#customer", "shopper-0001")
        page.click("#login")
        expect(page.locator("#who")).to_have_text("Signed in as shopper-0001")
        expect(page.locator("#login-error")).to_have_text("")
        expect(wheel).to_have_attribute("state", "ready")
        expect(page.locator("#earn li")).to_have_text(
            [
                "spin: Earn 5 to 50 coins and a coupon",
                "check-in: Earn 5 coins",
                "scratch card: Earn 5 to 100 coins",
            ]
        )
        page.locator("trigger-proxy-wheel >> button").click()
        expect(wheel).to_have_attribute("state", "won")
        expect(page.locator("trigger-proxy-wheel >> .hint")).to_have_text("Spins left: 1")
        status = page.locator("trigger-proxy-wheel >> .status").inner_text()
        won = number(status)
        assert 5 <= won <= 50
        assert "and a coupon" in status
        expect(page.locator("#balance")).to_have_text(f"Balance: {won} coins")
        expect(page.locator("#history li")).to_have_text([f"+{won} coins: Spin the wheel"])
        expect(page.locator("#coupons li")).to_have_text(
            [re.compile(r"SPIN-[0-9A-F]{6}: 10% off your next order")]
        )
        page.click("#checkin")
        expect(page.locator("#checkin-status")).to_have_text("Checked in: +5 coins!")
        expect(page.locator("#balance")).to_have_text(f"Balance: {won + 5} coins")
        page.click("#checkin")
        expect(page.locator("#checkin-status")).to_have_text(
            re.compile(r"You have checked in today\. Next check-in in \d+ h \d+ min\.")
        )
        page.screenshot(path=str(ARTIFACTS / "demo-storefront.png"), full_page=True)
        assert errors == []
    assert all(url.startswith(demo.url) for url in seen), seen  # the proxy only


MINUS = "\u2212"  # the page's sign of a debit


def figures(page: Any) -> dict[str, Any]:
    """Every figure the demo page shows of the customer's account."""
    from playwright.sync_api import expect

    history = page.locator("#history li").all_inner_texts()
    coupons = page.locator("#coupons li").all_inner_texts()
    for text in [*history, *coupons]:
        assert "as of" not in text, text  # the demo's reads never fail
        assert "retrying" not in text, text
    expect(page.locator("#balance")).to_have_text(re.compile(r"^Balance: \d+ coins$"))
    return {
        "page": number(page.locator("#balance").inner_text()),
        "wheel": number(page.locator("trigger-proxy-wheel >> .balance").inner_text()),
        "scratch card": number(page.locator("trigger-proxy-scratch >> .balance").inner_text()),
        "history": sum(
            int(m.group(1)) * (-1 if m.group(0).startswith(MINUS) else 1)
            for m in (re.match(rf"[+{MINUS}](\d+) coins", line) for line in history)
            if m
        ),
        "coupons": sum(bool(re.match(r"SPIN-[0-9A-F]{6}: ", line)) for line in coupons),
    }


def test_two_customers_trying_everything_twice_see_figures_that_agree(
    browser: Browser, tmp_path: Path
) -> None:
    """The demo as a new visitor tries it: two customers, each signing in, spinning, checking
    in, signing out, everything twice (the scratch card opens two minutes after the start: it
    only shows the balance here). After every action the wheel's balance, the scratch card's,
    the page's, the sum of the history and the coupons all agree, and no read's failure is
    shown as an empty account (the demo's reads are sized for it)."""
    from playwright.sync_api import expect

    with DemoProcess(tmp_path / "demo.log") as demo:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(demo.url)
        wheel = page.locator("trigger-proxy-wheel")
        balances: dict[str, int] = {}

        def agree(who: str, spins: int) -> None:
            # The page updates in steps (the reward's balance at once, then the reads): the
            # figures must come to agree, and stay so.
            deadline = time.monotonic() + 10
            while True:
                seen = figures(page)
                same = seen["page"] == seen["wheel"] == seen["scratch card"] == seen["history"]
                if same and seen["coupons"] == spins:
                    break
                assert time.monotonic() < deadline, seen
                page.wait_for_timeout(100)
            balances[who] = seen["page"]

        def accessible(state: str) -> None:
            from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

            found = [v["id"] for v in Axe().run(page).response["violations"]]
            tried("demo: axe", f"{state} {len(found)} found")
            assert found == [], (state, found)

        for visit in range(2):
            for who in ("shopper-alice", "shopper-bobby"):
                page.fill("#customer", who)
                page.click("#login")
                expect(page.locator("#who")).to_have_text(f"Signed in as {who}")
                expect(wheel).to_have_attribute("state", re.compile("ready|out-of-spins"))
                spins = 0 if visit == 0 else 2
                # "Ways to earn" says what the wheel pays (its segments run 5 to 50).
                expect(page.locator("#earn li").first).to_have_text(
                    "spin: Earn 5 to 50 coins and a coupon"
                )
                if visit == 0:
                    expect(page.locator("#balance")).to_have_text("Balance: 0 coins")
                else:
                    agree(who, spins)
                    assert balances[who] == figures(page)["page"]
                    if who == "shopper-alice":
                        accessible("signed in")
                for _ in range(2):
                    if visit == 0:
                        before = balances.get(who, 0)
                        page.locator("trigger-proxy-wheel >> button").click()
                        expect(wheel).to_have_attribute("state", re.compile("won|out-of-spins"))
                        won = number(page.locator("trigger-proxy-wheel >> .status").inner_text())
                        assert 5 <= won <= 50
                        spins += 1
                        expect(page.locator("#balance")).to_have_text(
                            f"Balance: {before + won} coins"
                        )
                        agree(who, spins)
                    page.click("#checkin")
                    expect(page.locator("#checkin-status")).to_have_text(
                        re.compile(r"Checked in: \+5 coins!|You have checked in today")
                    )
                    agree(who, spins)
                page.click("#logout")
                expect(page.locator("#who-row")).to_be_hidden()
                expect(page.locator("#balance")).to_have_text("")
        accessible("signed out")
        page.screenshot(path=str(ARTIFACTS / "demo-two-customers.png"), full_page=True)
        assert errors == []
    tried("demo", f"two customers, everything twice: balances {balances}")


# A storefront page written against Nector's API, as Nector's own widget calls it: a
# cross-origin fetch with x-apikey "null", x-apikey-algo and x-source (so the browser sends a
# preflight naming them), showing Nector's data.message when a call is refused.
WIDGET_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>storefront</title><link rel="icon" href="data:,"></head>
<body>
<button id="reward">Claim</button> <button id="steal">Claim for someone else</button>
<p id="message" role="status"></p>
<script type="module">
const params = new URLSearchParams(location.search);
const base = params.get("base"), token = params.get("token");
async function call(body) {
  const response = await fetch(base + "/api/v2/merchant/activities", {
    method: "POST",
    headers: {
      "accept": "application/json", "content-type": "application/json",
      "x-apikey": "null", "x-apikey-algo": "sha256", "x-source": "web",
      "authorization": "Bearer " + token,
    },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  const text = answer.meta.status === "error"
    ? answer.data.message
    : "You earned " + answer.data.wallet_reward.coins + " coins";
  document.querySelector("#message").textContent = text;
}
document.querySelector("#reward").onclick = () => call({trigger_id: params.get("trigger")});
document.querySelector("#steal").onclick = () =>
  call({trigger_id: params.get("trigger"), customer_id: "someone-else-0001"});
</script>
</body></html>
"""


def test_a_page_written_for_nector_is_rewarded_through_the_dropin_route(
    browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect
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

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(WIDGET_PAGE)

    shop = ThreadedServer(Starlette(routes=[Route("/", page)]))
    with StandInServer(stand_in_for(SPIN)) as nector, shop:
        config = proxy_config(nector.url, cors={"allow_origins": [shop.origin]})
        with ProxyProcess(tmp_path, config) as proxy:
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            query = f"base={proxy.base_url}&trigger={SPIN}&token={token('customer-0001')}"
            tab.goto(f"{shop.origin}/?{query}")
            tab.click("#reward")
            expect(tab.locator("#message")).to_have_text(re.compile(r"You earned \d+ coins"))
            tab.click("#steal")
            expect(tab.locator("#message")).to_have_text(
                "This account does not match. Please sign in again."
            )
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "dropin-refusal.png"))
    access = [json.loads(line) for line in proxy.log_lines() if '"route"' in line]
    assert errors == []
    # The browser asked first, since the page sends x-apikey cross-origin (Chromium keeps
    # preflights from Playwright's events, so the proxy's access log tells).
    dropin = [(a.get("method"), a.get("status")) for a in access if a["route"].startswith("/api/")]
    assert dropin[:2] == [("OPTIONS", 204), ("POST", 200)]
    (call,) = nector.stand_in.calls  # the refused call never reached Nector
    assert call.headers["x-apikey"] == API_KEY
    assert call.body == {"trigger_id": SPIN, "customer_id": "customer-0001", **call.body}
    assert "x-apikey-algo" not in call.headers


def test_the_readmes_storefront_example_runs_as_written(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from tests.helpers import SPIN, token
    from tests.servers import (
        ProxyProcess,
        StandInServer,
        ThreadedServer,
        proxy_config,
        stand_in_for,
    )
    from tests.test_docs import block

    example = block("README.md", 'name="trigger-session"')
    state: dict[str, str] = {}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(state["page"])

    shop = ThreadedServer(Starlette(routes=[Route("/", page)]))
    with StandInServer(stand_in_for(SPIN)) as nector, shop:
        config = proxy_config(nector.url, cors={"allow_origins": [shop.origin]})
        with ProxyProcess(tmp_path, config) as proxy:
            state["page"] = example.replace(
                "https://rewards.shop.example.com", proxy.base_url
            ).replace("SESSION_FROM_YOUR_BACKEND", token("customer-0001"))
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.goto(shop.origin)
            expect(tab.locator("#reward")).to_have_text(re.compile(r"You won \d+ coins"))
            tab.goto(shop.origin)  # the trigger allows 3 a minute: spend them, then the refusal
            tab.goto(shop.origin)
            tab.goto(shop.origin)
            expect(tab.locator("#reward")).to_have_text(re.compile(r"Try again in \d+ s"))
    assert errors == []
    assert len(nector.stand_in.calls) == 3
