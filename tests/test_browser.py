"""The demo page in a real browser: Debian's Chromium driven by Playwright.

Log in, spin, see the reward and the balance; spin again, be refused and see the countdown.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.demo_process import DemoProcess
from tests.helpers import need

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
# Chromium's own background traffic has nowhere to go on these machines.
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


def number(text: str) -> int:
    found = re.search(r"\d+", text)
    assert found is not None, text
    return int(found.group())


@pytest.fixture
def browser() -> Iterator[Browser]:
    need(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def test_spin_the_wheel_in_a_real_browser(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with DemoProcess(tmp_path / "demo.log") as demo:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(demo.url)
        expect(page.locator("#spin")).to_be_disabled()

        page.click("#login")
        expect(page.locator("#who")).to_contain_text("Logged in as demo-")
        page.click("#spin")
        expect(page.locator("#result")).to_have_text(re.compile(r"You won \d+ coins!"))
        won = number(page.locator("#result").inner_text())
        assert 5 <= won <= 50
        expect(page.locator("#balance")).to_have_text(f"Balance: {won} coins")
        expect(page.locator("#left")).to_have_text("Spins left this minute: 0")
        page.screenshot(path=str(ARTIFACTS / "demo-reward.png"), full_page=True)

        expect(page.locator("#spin")).to_be_enabled()
        page.click("#spin")
        expect(page.locator("#error")).to_have_text("You have used your spins for now.")
        expect(page.locator("#countdown")).to_have_text(re.compile(r"Next spin in \d+s"))
        first = number(page.locator("#countdown").inner_text())
        assert 1 <= first <= 60
        expect(page.locator("#spin")).to_be_disabled()
        page.wait_for_timeout(1500)
        later = number(page.locator("#countdown").inner_text())
        assert later < first  # it counts down
        expect(page.locator("#balance")).to_have_text(f"Balance: {won} coins")  # nothing paid
        page.screenshot(path=str(ARTIFACTS / "demo-countdown.png"), full_page=True)
        assert errors == []


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
            expect(tab.locator("#message")).to_have_text("the body names another customer")
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
