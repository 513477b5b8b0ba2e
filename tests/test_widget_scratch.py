"""<trigger-proxy-scratch> in a real browser (Debian's Chromium, Playwright), at desktop and phone
widths, on the demo page beside the wheel: every state a customer can meet, an honest card,
accessibility and layout; the wheel's campaign states; and the provider's human check.

The demo runs in this process (its proxy, its stand-in and its page on real sockets). The
answers the stand-in cannot produce (a closed schedule, a spent coin budget, a refused human
check) come from ``Stubs``, a thin layer in front of the demo that answers one queued request
or adds fields to the trigger's view; every win comes from the real proxy and the stand-in.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from proxy.app import create_app
from proxy.config.settings import Rate, Settings
from proxy.demo.nector import StandInTrigger
from proxy.demo.run import SCRATCH_CARD as DEMO_SCRATCH_ID
from proxy.demo.run import Demo, build_demo
from proxy.http.asgi import Message, Receive, Scope, Send
from proxy.identity.sessions import mint_token
from tests.browsers import ARTIFACTS
from tests.helpers import ENVIRON, config, tried
from tests.redis_util import free_port
from tests.servers import ThreadedServer

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, ViewportSize

SHOTS = ARTIFACTS / "widget-scratch"
CARD = "trigger-proxy-scratch"
WHEEL = "trigger-proxy-wheel"
SCRATCH_CARD = "scratch-card"
# The demo's own scratch card's id: the stand-in then holds one scratch card, and the page's
# "Ways to earn" (every trigger the stand-in holds) stays as long as the demo's.
SCRATCH_ID = DEMO_SCRATCH_ID
FAKE_PROVIDER = "/test/fake-provider.js"
SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 900},
    "phone": {"width": 390, "height": 844},
}
WATCH_SHIFTS = """
window.__shift = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__shift += entry.value;
}).observe({ type: "layout-shift", buffered: true });
"""
# A stand-in for the providers' scripts (explicit rendering, one API for the three): a button
# that hands out numbered tokens, and a count of the resets.
FAKE_PROVIDER_JS = """
window.__resets = 0;
const fake = {
  render(host, options) {
    let issued = 0;
    const check = document.createElement("button");
    check.type = "button";
    check.className = "fake-check";
    check.textContent = "I am human";
    check.onclick = () => { check.textContent = "Checked"; options.callback(`token-${++issued}`); };
    host.append(check);
    window.__sitekey = options.sitekey;
    window.__check = check;
    return "widget-1";
  },
  reset(id) { window.__resets += 1; window.__check.textContent = "I am human"; },
};
window.turnstile = fake;
window.hcaptcha = fake;
window.grecaptcha = { ...fake, ready(then) { setTimeout(then, 10); } };
"""


@dataclass
class Stubs:
    """In front of the demo: answers the next queued request of a method and path itself, or
    adds fields to a trigger's view; everything else goes to the demo as it came."""

    app: Demo
    answers: dict[tuple[str, str], list[tuple[int, dict[str, Any], dict[str, str]]]] = field(
        default_factory=dict
    )
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # by trigger
    marks: dict[str, dict[str, Any]] = field(default_factory=dict)  # top-level, on its answers

    def answer(self, path: str, status: int, error: dict[str, Any], **headers: str) -> None:
        self.answers.setdefault(("POST", path), []).append((status, {"error": error}, headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == FAKE_PROVIDER:
            return await _send(send, 200, FAKE_PROVIDER_JS.encode(), "text/javascript", {})
        queued = self.answers.get((method, path))
        if queued:
            status, body, headers = queued.pop(0)
            body["error"].setdefault("request_id", "stubbed")
            return await _send(send, status, json.dumps(body).encode(), "application/json", headers)
        trigger = path.removeprefix("/v1/triggers/")
        if method == "GET" and trigger in self.views:
            extra = self.views[trigger]
            return await self._amended(scope, receive, send, lambda v: v["trigger"].update(extra))
        if method == "POST" and trigger in self.marks:
            marks = self.marks[trigger]
            return await self._amended(scope, receive, send, lambda answer: answer.update(marks))
        await self.app(scope, receive, send)

    async def _amended(
        self, scope: Scope, receive: Receive, send: Send, amend: Callable[[Any], None]
    ) -> None:
        """The proxy's own answer, amended."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        answer = json.loads(b"".join(chunks))
        amend(answer)
        body = json.dumps(answer).encode()
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _send(send: Send, status: int, body: bytes, kind: str, headers: dict[str, str]) -> None:
    raw = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# Two cards a minute, 10 to 100 coins: whatever campaign controls the demo gives its own
# scratch-card trigger, these tests need a plain one.
TRIGGER = {
    "id": SCRATCH_ID,
    "name": SCRATCH_CARD,
    "sources": ["web"],
    "per_customer": "2/minute;20/day",
    "override": {
        "wallet": {
            "title": "Scratch card",
            "operation": "cr",
            "coin_range": {"min": 10, "max": 100},
        }
    },
}


def with_scratch_card(settings: Settings) -> Settings:
    """The demo's settings with this test's own ``scratch-card`` trigger."""
    [card] = Settings.from_mapping(config(triggers=[TRIGGER]), ENVIRON).triggers
    others = tuple(t for t in settings.triggers if t.name != SCRATCH_CARD)
    return replace(settings, triggers=(*others, card))


@pytest.fixture(scope="module")
def demo() -> Iterator[Stubs]:
    front, back = free_port(), free_port()
    built = build_demo(front, back)
    settings = with_scratch_card(built.settings)
    limits = replace(settings.limits, upstream=Rate(5000, 60))
    settings = replace(
        settings, limits=limits, reads=replace(settings.reads, budget=Rate(4000, 60))
    )
    built.stand_in.add_trigger(StandInTrigger(SCRATCH_ID, allow_override=True, name="scratch"))
    built = replace(built, settings=settings, proxy=create_app(settings))
    stubs = Stubs(built)
    with ThreadedServer(built.stand_in.app, port=back), ThreadedServer(stubs, port=front):
        yield stubs
    assert not [queued for queued in stubs.answers.values() if queued]  # every stub was asked


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url(demo: Stubs) -> str:
    return f"http://127.0.0.1:{demo.app.settings.server.port}/"


def rfc3339(seconds: float, page: Page | None = None) -> str:
    """A time ``seconds`` from now: the proxy's now, or the page's (its clock is Playwright's)."""
    now = datetime.now(UTC)
    if page is not None:
        now = datetime.fromtimestamp(page.evaluate("Date.now()") / 1000, UTC)
    return (now + timedelta(seconds=seconds)).isoformat(timespec="seconds")


class Visit:
    """One browser context on the demo page: a customer's visit, watching one widget."""

    def __init__(
        self, browser: Browser, demo: Stubs, size: str, widget: str = CARD, **options: Any
    ) -> None:
        self.demo, self.size, self.widget = demo, size, widget
        self.context = browser.new_context(viewport=SIZES[size], **options)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.posts: list[Request] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", self._seen)
        self.page.add_init_script(WATCH_SHIFTS)
        self.page.clock.install()
        self.page.goto(url(demo))

    def _seen(self, request: Request) -> None:
        if request.method == "POST" and "/v1/triggers/" in request.url:
            self.posts.append(request)  # the reward calls, each with its headers

    def part(self, name: str) -> Any:
        return self.page.locator(f"{self.widget} >> {name}")

    def state(self, expected: str, timeout: float = 10_000) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator(self.widget)).to_have_attribute("state", expected, timeout=timeout)

    def said(self, status: str | re.Pattern[str], hint: str | re.Pattern[str] = "") -> None:
        from playwright.sync_api import expect

        expect(self.part(".status")).to_have_text(status)
        expect(self.part(".hint")).to_have_text(hint)

    def sign_in(self, customer: str) -> None:
        from playwright.sync_api import expect

        self.page.fill("#customer", customer)
        self.page.click("#login")
        expect(self.page.locator(self.widget)).to_have_attribute("customer", customer)
        self.state("ready")

    def play(self) -> None:
        self.part("button.play").focus()  # by keyboard, as a customer without a mouse would
        self.page.keyboard.press("Enter")

    def revealed(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.page.evaluate(
            f"document.querySelector('{CARD}').revealed"
        )
        return found

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}-{self.size}.png"), full_page=True)

    def accessible(self, name: str) -> None:
        from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

        found = Axe().run(self.page).response["violations"]
        tried("scratch: axe", f"{name} {self.size} {len(found)} found")
        assert [(v["id"], v["impact"], v["help"]) for v in found] == []

    def fits(self) -> None:
        assert (
            self.page.evaluate("document.documentElement.scrollWidth") <= SIZES[self.size]["width"]
        )

    def close(self) -> None:
        shift = self.page.evaluate("window.__shift")
        tried("scratch: layout shift", f"{self.size} {shift:.3f}")
        assert shift < 0.01, shift
        assert self.errors == []
        self.context.close()


def won_coins(visit: Visit) -> int:
    text = visit.part(".status").inner_text()
    found = re.search(r"You won (\d+) coins", text)
    assert found, text
    return int(found.group(1))


def test_every_state_of_the_scratch_card(browser: Browser, demo: Stubs, size: str) -> None:
    from playwright.sync_api import expect

    visit = Visit(browser, demo, size)
    page = visit.page
    stand_in = demo.app.stand_in
    who = f"{size}-{time.time_ns() % 10**8}"
    trigger_path = f"/v1/triggers/{SCRATCH_CARD}"
    card = visit.part(".card")

    # Signed out: the card shows what it may hold, the button waits for a sign-in.
    visit.state("signed-out")
    visit.said("Sign in to scratch the card.")
    expect(visit.part("button.play")).to_be_disabled()
    expect(card).to_have_attribute("aria-label", "Scratch card: 10 to 100 coins")
    assert visit.revealed() is None
    visit.fits()
    visit.shot("signed-out")
    visit.accessible("signed-out")

    # Ready, then revealing: the result is announced once the card is uncovered.
    visit.sign_in(f"alice-{who}")
    expect(visit.part(".balance")).to_have_text("Balance: 0 coins")
    expect(visit.part("button.play")).to_have_text("Scratch the card")
    visit.shot("ready")
    visit.accessible("ready")
    visit.play()
    visit.state("revealing")
    expect(visit.part(".status")).to_have_text("")
    visit.shot("revealing")

    # Won: exactly the coins Nector gave, on the card, in the words and in the balance.
    visit.state("won")
    coins = won_coins(visit)
    lead = stand_in.find_lead(customer_id=f"alice-{who}")
    assert lead is not None
    assert lead.transactions[-1]["amount"] == coins
    assert 10 <= coins <= 100
    assert visit.revealed() == {"coins": coins, "coupon": False}
    expect(visit.part(".prize")).to_have_text(f"{coins}coins")
    expect(card).to_have_attribute("aria-label", f"Scratch card: {coins} coins")
    expect(visit.part(".balance")).to_have_text(f"Balance: {coins} coins")
    expect(page.locator(f"{WHEEL} >> .balance")).to_have_text(f"Balance: {coins} coins")
    expect(visit.part(".hint")).to_have_text("Cards left: 1")
    visit.fits()
    visit.shot("won")
    visit.accessible("won")

    # Out of tries: the last card's win starts the countdown at once; it survives a reload.
    visit.play()
    visit.state("out-of-tries", timeout=15_000)
    second = won_coins(visit)
    assert lead.transactions[-1]["amount"] == second
    assert visit.revealed() == {"coins": second, "coupon": False}
    expect(visit.part(".hint")).to_have_text(re.compile(r"Next card in (1 min 0s|\d+s)"))
    expect(visit.part("button.play")).to_be_disabled()
    page.reload()
    visit.state("out-of-tries")
    expect(visit.part(".hint")).to_have_text(re.compile(r"Next card in \d+"))
    expect(visit.part(".balance")).to_have_text(f"Balance: {coins + second} coins")
    visit.shot("out-of-tries")
    visit.accessible("out-of-tries")
    page.clock.fast_forward("01:05")
    visit.state("ready")
    # The proxy's window is a real minute, still running: its refusal uncovers nothing.
    visit.play()
    visit.state("out-of-tries")
    visit.said("You have used your cards for now.", re.compile(r"Next card in \d+"))
    assert visit.revealed() is None
    assert len(lead.transactions) == 2

    # Budget spent: the campaign's coins are given out; a countdown until more free up.
    visit.sign_in(f"bob-{who}")
    demo.answer(
        trigger_path,
        429,
        {"code": "coin_budget_spent", "message": "spent"},
        **{"Retry-After": "3600"},
    )
    visit.play()
    visit.state("budget-spent")
    visit.said("All the prizes for now have been given out.", "More prizes in 1 h 0 min")
    expect(visit.part("button.play")).to_be_disabled()
    assert visit.revealed() is None
    visit.fits()
    visit.shot("budget-spent")
    visit.accessible("budget-spent")
    page.reload()
    visit.state("budget-spent")  # kept across a reload, as the other countdowns

    # Not active yet, said by the proxy's refusal: a countdown to when it opens.
    visit.sign_in(f"carol-{who}")
    opens = rfc3339(125)
    demo.answer(
        trigger_path,
        403,
        {"code": "trigger_not_active", "message": "closed", "opens_at": opens},
        **{"Retry-After": "125"},
    )
    visit.play()
    visit.state("not-active")
    visit.said("This game is not open yet.", re.compile(r"Opens in 2 min \d+s"))
    expect(visit.part("button.play")).to_be_disabled()
    visit.shot("not-active")
    visit.accessible("not-active")
    page.clock.fast_forward("02:10")
    visit.state("ready")  # it looked again

    # Busy: Nector at its cap. The proxy answers 503 with Retry-After; nothing uncovered.
    visit.sign_in(f"dave-{who}")
    stand_in.outage, stand_in.outage_retry_after = 429, 5
    try:
        visit.play()
        visit.state("busy")
        visit.said("Lots of players right now.", re.compile(r"Try again in [1-5]s"))
        assert visit.revealed() is None
        visit.shot("busy")
        visit.accessible("busy")
        page.clock.fast_forward("00:06")
        visit.state("ready")
        # Error: Nector fails; said plainly, and the customer may try again.
        visit.sign_in(f"erin-{who}")
        stand_in.outage = 500
        visit.play()
        visit.state("error")
        visit.said("We could not reveal your card. Please try again in a moment.")
        expect(visit.part("button.play")).to_be_enabled()
        assert visit.revealed() is None
        visit.shot("error")
        visit.accessible("error")
    finally:
        stand_in.outage = stand_in.outage_retry_after = None

    # Offline: the card waits for the network, then goes through once, with one key.
    visit.sign_in(f"frank-{who}")
    visit.context.set_offline(True)
    asked = len(visit.posts)
    visit.play()
    visit.state("offline", timeout=20_000)
    visit.said(re.compile("You are offline"))
    visit.shot("offline")
    visit.accessible("offline")
    visit.context.set_offline(False)
    visit.state("won", timeout=20_000)
    keys = {r.headers.get("idempotency-key") for r in visit.posts[asked:]}
    assert len(keys) == 1, keys
    frank = stand_in.find_lead(customer_id=f"frank-{who}")
    assert frank is not None
    assert [t["amount"] for t in frank.transactions] == [won_coins(visit)]
    assert visit.revealed() == {"coins": won_coins(visit), "coupon": False}

    # Session expired: the card asks to sign in again.
    secret = demo.app.settings.secrets.session_secrets[-1].reveal()
    ending = mint_token([secret], {"customer_id": f"gina-{who}", "exp": int(time.time()) + 1})
    visit.context.add_cookies([{"name": "trigger_session", "value": ending, "url": url(demo)}])
    time.sleep(1.5)
    page.evaluate(f"document.querySelector('{CARD}').refresh()")
    visit.state("expired")
    visit.said("Your session has ended. Please sign in again.")
    expect(visit.part("button.play")).to_be_disabled()
    assert visit.revealed() is None
    visit.shot("expired")
    visit.accessible("expired")
    visit.close()


def test_a_closed_schedule_is_said_before_anyone_signs_in(
    browser: Browser, demo: Stubs, size: str
) -> None:
    schedule = {"starts_at": rfc3339(3 * 3600 + 90), "ends_at": None, "days": None,
                "hours": None, "timezone": "UTC", "open": False,
                "opens_at": rfc3339(3 * 3600 + 90), "closes_at": None}  # fmt: skip
    demo.views[SCRATCH_CARD] = {"schedule": schedule}
    try:
        visit = Visit(browser, demo, size)
        visit.state("not-active")
        visit.said("This game is not open yet.", re.compile(r"Opens in 3 h 1 min"))
        visit.fits()
        visit.shot("not-open-yet")
        visit.accessible("not-open-yet")
        # It opens: the widget looks again (its view may be a cached one, still saying closed).
        visit.page.clock.fast_forward("03:02:00")
        visit.state("signed-out")
        visit.close()
        # Ended: no next opening, no countdown.
        schedule["opens_at"] = None
        visit = Visit(browser, demo, size)
        visit.state("not-active")
        visit.said("This game has ended.")
        visit.shot("ended")
        visit.accessible("ended")
        visit.close()
    finally:
        del demo.views[SCRATCH_CARD]


def test_the_wheel_says_not_active_and_budget_spent(browser: Browser, demo: Stubs) -> None:
    from playwright.sync_api import expect

    for size in SIZES:
        visit = Visit(browser, demo, size, widget=WHEEL)
        who = f"wheel-{size}-{time.time_ns() % 10**8}"
        path = "/v1/triggers/spin-wheel"
        before = visit.page.evaluate(f"getComputedStyle(document.querySelector('{WHEEL}')"
                                     ".shadowRoot.querySelector('.wheel')).transform")  # fmt: skip
        visit.sign_in(f"ann-{who}")
        demo.answer(
            path, 429, {"code": "coin_budget_spent", "message": "spent"}, **{"Retry-After": "90"}
        )
        visit.play()
        visit.state("budget-spent")
        visit.said("All the prizes for now have been given out.", "More prizes in 1 min 30s")
        expect(visit.part("button.play")).to_be_disabled()
        visit.shot("wheel-budget-spent")
        visit.accessible("wheel-budget-spent")
        visit.page.clock.fast_forward("01:35")
        visit.state("ready")

        visit.sign_in(f"ben-{who}")
        error = {"code": "trigger_not_active", "message": "closed", "opens_at": rfc3339(45)}
        demo.answer(path, 403, error, **{"Retry-After": "45"})
        visit.play()
        visit.state("not-active")
        visit.said("This game is not open yet.", re.compile(r"Opens in 4\ds"))
        expect(visit.part("button.play")).to_be_disabled()
        visit.shot("wheel-not-active")
        visit.accessible("wheel-not-active")
        # A refusal never turns the wheel.
        after = visit.page.evaluate(f"getComputedStyle(document.querySelector('{WHEEL}')"
                                    ".shadowRoot.querySelector('.wheel')).transform")  # fmt: skip
        assert after == before
        visit.close()


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha", "recaptcha"])
def test_the_human_check_is_rendered_and_its_token_sent_once(
    browser: Browser, demo: Stubs, provider: str
) -> None:
    from playwright.sync_api import expect

    site_key = "1x00000000000000000000AA"
    demo.views[SCRATCH_CARD] = {"challenge": {"provider": provider, "site_key": site_key}}
    try:
        visit = Visit(browser, demo, "phone")
        page = visit.page
        page.evaluate(
            f"""() => {{ const card = document.querySelector('{CARD}');
                card.setAttribute('challenge-script', '{FAKE_PROVIDER}'); card.refresh(); }}"""
        )
        customer = f"hugo-{time.time_ns() % 10**8}"
        visit.sign_in(customer)
        check = page.locator(f"{CARD} .fake-check")  # the provider's widget, in the light DOM
        expect(check).to_have_text("I am human")
        assert page.evaluate("window.__sitekey") == site_key
        visit.shot(f"challenge-{provider}")
        visit.accessible(f"challenge-{provider}")

        # No token yet: nothing is sent, the customer is asked to do the check.
        visit.play()
        expect(visit.part(".status")).to_have_text("Please confirm you are human first.")
        assert visit.posts == []

        # A token the proxy refuses: the provider's widget is reset for a new one.
        check.click()
        demo.answer(
            f"/v1/triggers/{SCRATCH_CARD}", 403, {"code": "challenge_failed", "message": "no"}
        )
        visit.play()
        visit.state("ready")
        visit.said("That check did not go through. Please confirm you are human again.")
        assert [r.headers.get("x-challenge-token") for r in visit.posts] == ["token-1"]
        assert page.evaluate("window.__resets") == 1
        expect(check).to_have_text("I am human")
        assert visit.revealed() is None

        # A fresh token: the real proxy and the stand-in answer, and the used token is reset.
        check.click()
        visit.play()
        visit.state("won")
        tokens = [r.headers.get("x-challenge-token") for r in visit.posts]
        assert tokens == ["token-1", "token-2"]
        assert len({r.headers.get("idempotency-key") for r in visit.posts}) == 2
        lead = demo.app.stand_in.find_lead(customer_id=customer)
        assert lead is not None
        assert visit.revealed() == {"coins": lead.transactions[-1]["amount"], "coupon": False}
        assert page.evaluate("window.__resets") == 2
        visit.close()
    finally:
        del demo.views[SCRATCH_CARD]


def test_a_storefront_on_another_origin_needs_only_the_tag_and_a_session(
    browser: Browser, tmp_path: Path
) -> None:
    """One script tag from ``trigger-proxy serve`` on another origin: the card's module and the
    modules it imports load across origins, and it uncovers what the stand-in paid."""
    from playwright.sync_api import expect
    from starlette.applications import Starlette
    from starlette.requests import Request as ShopRequest
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from tests.helpers import token
    from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

    session = token("merchant-shopper-9")

    async def storefront(request: ShopRequest) -> HTMLResponse:
        base = request.query_params["proxy"]
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
            <title>A shop</title><link rel="icon" href="data:,">
            <script type="module" src="{base}/client/trigger-proxy-scratch.js"></script></head>
            <body><main><trigger-proxy-scratch trigger="scratch-card" base-url="{base}">
            </trigger-proxy-scratch></main>
            <script>document.querySelector("trigger-proxy-scratch").token = "{session}";</script>
            </body></html>"""
        )

    shop = ThreadedServer(Starlette(routes=[Route("/", storefront)]))
    with StandInServer(stand_in_for(SCRATCH_ID)) as nector, shop:
        settings = proxy_config(
            nector.url, cors={"allow_origins": [shop.origin]}, triggers=[TRIGGER]
        )
        with ProxyProcess(tmp_path, settings) as proxy:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{shop.origin}/?proxy={proxy.base_url}")
            card = page.locator(CARD)
            expect(card).to_have_attribute("state", "ready")
            page.locator(f"{CARD} >> button.play").click()
            expect(card).to_have_attribute("state", "won")
            revealed = page.evaluate(f"document.querySelector('{CARD}').revealed")
    assert errors == []
    lead = nector.stand_in.find_lead(customer_id="merchant-shopper-9")
    assert lead is not None
    assert revealed == {"coins": lead.transactions[-1]["amount"], "coupon": False}


def test_a_reduced_motion_card_is_uncovered_at_once_on_what_nector_paid(
    browser: Browser, demo: Stubs
) -> None:
    visit = Visit(browser, demo, "phone", reduced_motion="reduce")
    duration = visit.page.evaluate(
        f"getComputedStyle(document.querySelector('{CARD}').shadowRoot.querySelector('.coat'))"
        ".transitionDuration"
    )
    assert duration == "0s"
    seen = set()
    for i in range(6):
        customer = f"many-{time.time_ns() % 10**8}-{i}"
        visit.sign_in(customer)
        visit.play()
        visit.state("won")
        lead = demo.app.stand_in.find_lead(customer_id=customer)
        assert lead is not None
        coins = lead.transactions[-1]["amount"]
        assert won_coins(visit) == coins
        assert visit.revealed() == {"coins": coins, "coupon": False}
        seen.add(coins)
    tried("scratch: honest reveals", f"{len(seen)} distinct rewards in 6 cards")
    visit.close()


def test_a_dry_run_is_said_to_be_one(browser: Browser, demo: Stubs) -> None:
    """The proxy's dry run answers as Nector would, marked ``"dry_run": true``: here the
    stand-in's real answer, so marked."""
    from playwright.sync_api import expect

    demo.marks[SCRATCH_CARD] = {"dry_run": True}
    try:
        visit = Visit(browser, demo, "desktop")
        visit.sign_in(f"tess-{time.time_ns() % 10**8}")
        visit.play()
        visit.state("won")
        expect(visit.part(".hint")).to_have_text("A test run: nothing was given. Cards left: 1")
        visit.close()
    finally:
        del demo.marks[SCRATCH_CARD]


def test_the_card_fits_a_phone_and_takes_the_theme(browser: Browser, demo: Stubs) -> None:
    for width in (320, 390):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        page.goto(url(demo))
        page.locator(CARD).wait_for()
        box = page.locator(f"{CARD} >> button.play").bounding_box()
        card = page.locator(f"{CARD} >> .card").bounding_box()
        assert box is not None
        assert card is not None
        assert box["width"] >= 200, box  # the whole width, not squeezed into a column
        assert box["height"] < 60, box  # one line
        assert 0 <= card["x"] <= card["x"] + card["width"] <= width, card
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        context.close()
    page = browser.new_page()
    page.goto(url(demo))
    page.locator(CARD).wait_for()
    page.evaluate(
        f"document.querySelector('{CARD}').style.cssText = '--tp-accent: rgb(10, 120, 60); "
        "--tp-accent-text: rgb(255, 255, 240); --tp-coat: rgb(200, 180, 20)'"
    )
    colors = page.evaluate(
        f"""() => {{
          const root = document.querySelector('{CARD}').shadowRoot;
          const button = getComputedStyle(root.querySelector('button'));
          return [button.backgroundColor, button.color,
                  getComputedStyle(root.querySelector('.coat')).backgroundImage];
        }}"""
    )
    assert colors[:2] == ["rgb(10, 120, 60)", "rgb(255, 255, 240)"]
    assert "rgb(200, 180, 20)" in colors[2]
