"""<trigger-proxy-wheel> in a real browser (Debian's Chromium, Playwright), at desktop and phone
widths: every state a customer can meet, an honest wheel, accessibility and layout.

The demo runs in this process (its proxy, its stand-in and its page on real sockets), so a test
can make Nector refuse or fail. Page time runs on Playwright's clock, so a minute's countdown
is skipped, not waited. Screenshots go to test-artifacts/widget/ (kept by CI, not compared).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from proxy.app import create_app
from proxy.config.settings import Rate
from proxy.demo.run import Demo, build_demo
from proxy.identity.sessions import mint_token
from tests.browsers import ARTIFACTS
from tests.helpers import tried
from tests.redis_util import free_port
from tests.servers import ThreadedServer

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

SHOTS = ARTIFACTS / "widget"
WHEEL = "trigger-proxy-wheel"
BUTTON = f"{WHEEL} >> button"
STATUS = f"{WHEEL} >> .status"
HINT = f"{WHEEL} >> .hint"
BALANCE = f"{WHEEL} >> .balance"
SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 900},
    "phone": {"width": 390, "height": 844},
}
# Layout shifts not caused by the customer's own input, summed (Cumulative Layout Shift).
WATCH_SHIFTS = """
window.__shift = 0;
window.__shifted = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.hadRecentInput) continue;
    window.__shift += entry.value;
    for (const source of entry.sources || []) {
      const node = source.node;
      window.__shifted.push(node ? `${node.nodeName}#${node.id}.${node.className}` : "?");
    }
  }
}).observe({ type: "layout-shift", buffered: true });
"""


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    front, back = free_port(), free_port()
    built = build_demo(front, back)
    # The demo's budgets are for one person trying it; these tests sign in dozens of customers
    # a minute, each read and spin a call to the stand-in.
    settings = built.settings
    limits = replace(settings.limits, upstream=Rate(5000, 60))
    settings = replace(
        settings, limits=limits, reads=replace(settings.reads, budget=Rate(4000, 60))
    )
    built = replace(built, settings=settings, proxy=create_app(settings))
    with ThreadedServer(built.stand_in.app, port=back), ThreadedServer(built, port=front):
        yield built


def url(demo: Demo) -> str:
    return f"http://127.0.0.1:{demo.settings.server.port}/"


class Shop:
    """One browser context on the demo page: a customer's visit."""

    def __init__(self, browser: Browser, demo: Demo, size: str, **options: Any) -> None:
        self.demo, self.size = demo, size
        self.context = browser.new_context(viewport=SIZES[size], **options)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[Any] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.add_init_script(WATCH_SHIFTS)
        self.page.clock.install()
        self.page.goto(url(demo))

    def state(self, expected: str, timeout: float = 10_000) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator(WHEEL)).to_have_attribute("state", expected, timeout=timeout)

    def sign_in(self, customer: str) -> None:
        from playwright.sync_api import expect

        self.page.fill("#customer", customer)
        self.page.click("#login")
        # The page names the customer to the widget as it refreshes it: then wait for ready.
        expect(self.page.locator(WHEEL)).to_have_attribute("customer", customer)
        self.state("ready")

    def spin(self) -> None:
        self.page.locator(BUTTON).focus()  # by keyboard, as a customer without a mouse would
        self.page.keyboard.press("Enter")

    def rotation(self) -> float:
        """The wheel's turn, read from its transform matrix."""
        angle: float = self.page.evaluate(
            """() => {
              const wheel = document.querySelector("trigger-proxy-wheel").shadowRoot
                .querySelector(".wheel");
              const m = new DOMMatrix(getComputedStyle(wheel).transform);
              return Math.atan2(m.b, m.a) * 180 / Math.PI;
            }"""
        )
        return angle % 360

    def landed(self) -> dict[str, Any]:
        """The segment under the pointer, worked out from the wheel's final angle."""
        segments: list[dict[str, Any]] = self.page.evaluate(
            "() => document.querySelector('trigger-proxy-wheel').segments"
        )
        at_top = (360 - self.rotation()) % 360  # the wheel's own angle now under the pointer
        return segments[int(at_top // (360 / len(segments)))]

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}-{self.size}.png"), full_page=True)

    def accessible(self, name: str) -> None:
        from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

        results = Axe().run(self.page)
        serious = [
            (v["id"], v["help"])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        tried("widget: axe", f"{name} {self.size} {len(results.response['violations'])} found")
        assert serious == [], serious

    def close(self) -> None:
        shift = self.page.evaluate("window.__shift")
        tried("widget: layout shift", f"{self.size} {shift:.3f}")
        assert shift < 0.01, (shift, self.page.evaluate("window.__shifted"))
        assert self.errors == []
        assert not [r.url for r in self.requests if r.url.endswith("/favicon.ico")]
        self.context.close()


def won_coins(shop: Shop) -> int:
    text = shop.page.locator(STATUS).inner_text()
    found = re.search(r"You won (\d+) coins", text)
    assert found, text
    return int(found.group(1))


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_state_a_customer_meets(browser: Browser, demo: Demo, size: str) -> None:
    from playwright.sync_api import expect

    shop = Shop(browser, demo, size)
    page = shop.page
    stand_in = demo.stand_in
    who = f"{size}-{time.time_ns() % 10**8}"

    # Signed out: the wheel shows its honest segments, the button waits for a sign-in.
    shop.state("signed-out")
    expect(page.locator(STATUS)).to_have_text("Sign in to spin the wheel.")
    expect(page.locator(BUTTON)).to_be_disabled()
    labels = [s["label"] for s in page.evaluate(f"document.querySelector('{WHEEL}').segments")]
    assert (labels[0], labels[-1]) == ("5\u20139", "45\u201350")  # en dashes
    shop.shot("signed-out")
    shop.accessible("signed-out")

    # Ready, then spinning: the result is announced only once the wheel has stopped.
    shop.sign_in(f"alice-{who}")
    expect(page.locator(BALANCE)).to_have_text("Balance: 0 coins")
    shop.shot("ready")
    shop.spin()
    shop.state("spinning")
    expect(page.locator(STATUS)).to_have_text("")
    shop.shot("spinning")
    # Won, one spin left of the two a minute.
    shop.state("won")
    coins = won_coins(shop)
    assert shop.landed()["min"] <= coins <= shop.landed()["max"]
    lead = stand_in.find_lead(customer_id=f"alice-{who}")
    assert lead is not None
    assert lead.transactions[-1]["amount"] == coins
    expect(page.locator(BALANCE)).to_have_text(f"Balance: {coins} coins")
    expect(page.locator(HINT)).to_have_text("Spins left: 1")
    expect(page.locator(BUTTON)).to_be_enabled()
    shop.shot("won")
    shop.accessible("won")
    # Won again, with no spins left: the countdown starts at once and the button stays off,
    # since the next click could only be refused.
    shop.spin()
    shop.state("out-of-spins", timeout=15_000)
    total = coins + won_coins(shop)
    assert shop.landed()["min"] <= won_coins(shop) <= shop.landed()["max"]
    expect(page.locator(BALANCE)).to_have_text(f"Balance: {total} coins")
    expect(page.locator(HINT)).to_have_text(re.compile(r"Next spin in (1 min 0s|\d+s)"))
    expect(page.locator(BUTTON)).to_be_disabled()
    shop.shot("won-last")

    # The countdown survives a reload, and ends by itself.
    page.reload()
    shop.state("out-of-spins")
    expect(page.locator("#who")).to_have_text(f"Signed in as alice-{who}")  # still signed in
    expect(page.locator(BALANCE)).to_have_text(f"Balance: {total} coins")
    expect(page.locator(HINT)).to_have_text(re.compile(r"Next spin in \d+"))
    page.clock.fast_forward("01:05")
    shop.state("ready")
    expect(page.locator(STATUS)).to_have_text("")
    expect(page.locator(HINT)).to_have_text("")

    # A refusal never turns the wheel: the proxy's window is a real minute, still running.
    before = shop.rotation()
    shop.spin()
    shop.state("out-of-spins")
    expect(page.locator(STATUS)).to_have_text("You have used your spins for now.")
    assert shop.rotation() == before
    shop.shot("out-of-spins")
    shop.accessible("out-of-spins")

    # Switching customer clears everything of the previous one.
    shop.sign_in(f"bob-{who}")
    expect(page.locator(BALANCE)).to_have_text("Balance: 0 coins")
    expect(page.locator(STATUS)).to_have_text("")

    # Busy: Nector at its cap. The proxy answers 503 with Retry-After; no spin, a countdown.
    stand_in.outage, stand_in.outage_retry_after = 429, 5
    try:
        shop.spin()
        shop.state("busy")
        expect(page.locator(STATUS)).to_have_text("Lots of players right now.")
        expect(page.locator(HINT)).to_have_text(re.compile(r"Try again in [1-5]s"))
        assert shop.rotation() == before
        shop.shot("busy")
        page.clock.fast_forward("00:06")
        shop.state("ready")
        # Error: Nector fails. Said plainly, and the customer may try again. (The busy call
        # reached Nector and spent one of Bob's spins: a fresh customer keeps the steps apart.)
        shop.sign_in(f"erin-{who}")
        stand_in.outage = 500
        shop.spin()
        shop.state("error")
        expect(page.locator(STATUS)).to_have_text(
            "We could not finish your spin. Please try again in a moment."
        )
        expect(page.locator(BUTTON)).to_be_enabled()
        assert shop.rotation() == before
        shop.shot("error")
    finally:
        stand_in.outage = stand_in.outage_retry_after = None

    # Offline: the spin waits for the network and then goes through, once, with one key.
    shop.sign_in(f"carol-{who}")
    shop.context.set_offline(True)
    asked = len(shop.requests)
    shop.spin()
    shop.state("offline", timeout=20_000)
    expect(page.locator(STATUS)).to_have_text(re.compile("You are offline"))
    shop.shot("offline")
    shop.context.set_offline(False)
    shop.state("won", timeout=20_000)
    keys = {
        r.headers.get("idempotency-key")
        for r in shop.requests[asked:]
        if "/v1/triggers/" in r.url and r.method == "POST"
    }
    assert len(keys) == 1, keys  # every attempt of the one spin, the online one included
    carol = stand_in.find_lead(customer_id=f"carol-{who}")
    assert carol is not None
    assert len(carol.transactions) == 1
    assert shop.landed()["min"] <= won_coins(shop) <= shop.landed()["max"]

    # Session expired: the merchant's session ends; the widget asks to sign in again.
    secret = demo.settings.secrets.session_secrets[-1].reveal()
    ending = mint_token([secret], {"customer_id": f"dave-{who}", "exp": int(time.time()) + 1})
    shop.context.add_cookies([{"name": "trigger_session", "value": ending, "url": url(demo)}])
    time.sleep(1.5)
    page.evaluate(f"document.querySelector('{WHEEL}').refresh()")
    shop.state("expired")
    expect(page.locator(STATUS)).to_have_text("Your session has ended. Please sign in again.")
    expect(page.locator(BUTTON)).to_be_disabled()
    # The page forgets the customer too: no name, no balance, no check-in.
    expect(page.locator("#who-row")).to_be_hidden()
    expect(page.locator("#balance")).to_have_text("")
    expect(page.locator("#checkin")).to_be_disabled()
    shop.shot("expired")
    shop.close()


def test_the_wheel_lands_on_the_reward_nector_returned(browser: Browser, demo: Demo) -> None:
    shop = Shop(browser, demo, "phone", reduced_motion="reduce")
    # Reduced motion: no animation at all, the wheel is simply at its place.
    duration = shop.page.evaluate(
        f"getComputedStyle(document.querySelector('{WHEEL}').shadowRoot.querySelector('.wheel'))"
        ".transitionDuration"
    )
    assert duration == "0s"
    seen = set()
    for i in range(12):
        customer = f"many-{time.time_ns() % 10**8}-{i}"
        shop.sign_in(customer)
        shop.spin()
        shop.state("won")
        coins = won_coins(shop)
        lead = shop.demo.stand_in.find_lead(customer_id=customer)
        assert lead is not None
        assert lead.transactions[-1]["amount"] == coins
        landed = shop.landed()
        assert landed["min"] <= coins <= landed["max"], (coins, landed)
        seen.add(landed["label"])
    tried("widget: honest landings", f"{len(seen)} distinct segments in 12 spins")
    shop.close()


def test_the_layout_fits_a_phone(browser: Browser, demo: Demo) -> None:
    for width in (320, 390):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        page.goto(url(demo))
        page.locator(WHEEL).wait_for()
        box = page.locator(BUTTON).bounding_box()
        assert box is not None
        assert box["width"] >= 200, box  # the whole width, not squeezed into a column
        assert box["height"] < 60, box  # one line
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        context.close()


def test_a_merchant_themes_it_with_custom_properties(browser: Browser, demo: Demo) -> None:
    page = browser.new_page()
    page.goto(url(demo))
    page.locator(WHEEL).wait_for()
    page.evaluate(
        f"document.querySelector('{WHEEL}').style.cssText = "
        "'--tp-accent: rgb(10, 120, 60); --tp-accent-text: rgb(255, 255, 240)'"
    )
    colors = page.evaluate(
        f"""() => {{
          const style = getComputedStyle(
            document.querySelector('{WHEEL}').shadowRoot.querySelector('button'));
          return [style.backgroundColor, style.color];
        }}"""
    )
    assert colors == ["rgb(10, 120, 60)", "rgb(255, 255, 240)"]


def test_a_storefront_with_only_the_tag_and_a_session_works_against_serve(
    browser: Browser, tmp_path: Path
) -> None:
    """A merchant's page on its own origin: one script tag, the element, and the session its
    backend minted. Everything else comes from ``trigger-proxy serve``."""
    from playwright.sync_api import expect
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from tests.helpers import SPIN, token
    from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

    session = token("merchant-shopper-1")

    async def storefront(request: Request) -> HTMLResponse:
        base = request.query_params["proxy"]
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
            <title>A shop</title><link rel="icon" href="data:,">
            <script type="module" src="{base}/client/trigger-proxy-wheel.js"></script></head>
            <body><main><trigger-proxy-wheel trigger="spin-wheel" base-url="{base}">
            </trigger-proxy-wheel></main>
            <script>document.querySelector("trigger-proxy-wheel").token = "{session}";</script>
            </body></html>"""
        )

    shop = ThreadedServer(Starlette(routes=[Route("/", storefront)]))
    with StandInServer(stand_in_for(SPIN)) as nector, shop:
        config = proxy_config(
            nector.url,
            cors={"allow_origins": [shop.origin]},
            reads={"routes": ["leads"]},
        )
        with ProxyProcess(tmp_path, config) as proxy:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{shop.origin}/?proxy={proxy.base_url}")
            wheel = page.locator(WHEEL)
            expect(wheel).to_have_attribute("state", "ready")
            expect(page.locator(BALANCE)).to_have_text("Balance: 0 coins")  # no lead yet
            page.locator(BUTTON).click()
            expect(wheel).to_have_attribute("state", "won")
            expect(page.locator(HINT)).to_have_text("Spins left: 2")  # three a minute here
            coins = int(re.findall(r"\d+", page.locator(STATUS).inner_text())[0])
            expect(page.locator(BALANCE)).to_have_text(f"Balance: {coins} coins")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "storefront-tag-only.png"))
    assert errors == []
    (call,) = [c for c in nector.stand_in.calls if c.method == "POST"]
    assert call.body["customer_id"] == "merchant-shopper-1"
    lead = nector.stand_in.find_lead(customer_id="merchant-shopper-1")
    assert lead is not None
    assert lead.transactions[-1]["amount"] == coins


def test_the_countdown_kept_across_reloads_holds_nothing_of_the_token(
    browser: Browser, tmp_path: Path
) -> None:
    """With no reads to name the customer, the countdown is kept under a digest of the session:
    localStorage outlives the page, and a token's signature is what makes it a session."""
    from playwright.sync_api import expect
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from tests.helpers import SPIN, token
    from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

    session = token("merchant-shopper-2")
    signature = session.rpartition(".")[2]

    async def storefront(request: Request) -> HTMLResponse:
        base = request.query_params["proxy"]
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
            <title>A shop</title><link rel="icon" href="data:,">
            <script type="module" src="{base}/client/trigger-proxy-wheel.js"></script></head>
            <body><main><trigger-proxy-wheel trigger="spin-wheel" base-url="{base}">
            </trigger-proxy-wheel></main>
            <script>document.querySelector("trigger-proxy-wheel").token = "{session}";</script>
            </body></html>"""
        )

    shop = ThreadedServer(Starlette(routes=[Route("/", storefront)]))
    with StandInServer(stand_in_for(SPIN)) as nector, shop:
        config = proxy_config(nector.url, cors={"allow_origins": [shop.origin]})
        with ProxyProcess(tmp_path, config) as proxy:
            context = browser.new_context(reduced_motion="reduce")
            page = context.new_page()
            page.goto(f"{shop.origin}/?proxy={proxy.base_url}")
            wheel = page.locator(WHEEL)
            for _ in range(3):  # three a minute here: the last win starts the countdown
                expect(page.locator(BUTTON)).to_be_enabled()
                page.locator(BUTTON).click()
                expect(wheel).to_have_attribute("state", re.compile("won|out-of-spins"))
            expect(wheel).to_have_attribute("state", "out-of-spins")
            kept: dict[str, str] = page.evaluate(
                "Object.fromEntries(Object.keys(localStorage).map(k => [k, localStorage[k]]))"
            )
            page.reload()
            expect(wheel).to_have_attribute("state", "out-of-spins")  # it survives a reload
            context.close()
    [key] = kept
    assert key.startswith("trigger-proxy-wheel:spin-wheel:t:")
    stored = key + kept[key]
    pieces = {signature[i : i + 6] for i in range(len(signature) - 5)}
    assert not [piece for piece in pieces if piece in stored], stored


def test_a_balance_that_cannot_be_read_is_never_shown_as_an_empty_account(
    browser: Browser, demo: Demo
) -> None:
    """The proxy answering 503 with no copy to stand in: the wheel and the page say they could
    not load and look again, or show the last figures as of when they were seen; never 0."""
    from playwright.sync_api import Route, expect

    shop = Shop(browser, demo, "desktop")
    page = shop.page
    who = f"unread-{time.time_ns() % 10**8}"
    shop.sign_in(who)
    shop.spin()
    shop.state("won")
    coins = won_coins(shop)
    expect(page.locator("#balance")).to_have_text(f"Balance: {coins} coins")

    def busy(route: Route) -> None:
        route.fulfill(
            status=503,
            headers={"Retry-After": "5", "Content-Type": "application/json"},
            body='{"error": {"code": "upstream_busy", "message": "busy", "request_id": "x"}}',
        )

    page.route("**/api/v2/merchant/leads/**", busy)
    # The page knows the figures it showed: after the check-in's own answer (its balance, no
    # read needed), a lead read that fails leaves them standing, as of when they were seen.
    page.click("#checkin")
    expect(page.locator("#checkin-status")).to_have_text("Checked in: +5 coins!")
    expect(page.locator("#balance")).to_have_text(
        re.compile(rf"^Balance: {coins + 5} coins \(as of .+\)$")
    )
    expect(page.locator(BALANCE)).to_have_text(f"Balance: {coins + 5} coins")
    # A reload knows nothing: both say so, and neither shows an empty account.
    page.reload()
    expect(page.locator(BALANCE)).to_have_text("Balance: couldn't load, retrying…")
    expect(page.locator("#balance")).to_have_text("Balance: couldn't load, retrying…")
    expect(page.locator("#coupons li").first).not_to_have_text("No coupons yet")
    # Nector back: within a retry both show the balance again.
    page.unroute("**/api/v2/merchant/leads/**")
    page.clock.fast_forward(6000)
    expect(page.locator(BALANCE)).to_have_text(f"Balance: {coins + 5} coins")
    expect(page.locator("#balance")).to_have_text(f"Balance: {coins + 5} coins")
    assert shop.errors == []
    shop.close()
