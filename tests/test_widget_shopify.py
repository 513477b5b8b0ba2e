"""<trigger-proxy-wheel> on a Shopify theme with no backend, in Chromium: through a stand-in
shop that signs and forwards its App Proxy path as Shopify does, and on a page carrying the
digest a theme renders. The demo runs in this process (its proxy, Nector's stand-in and the
stand-in shop on real sockets)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from proxy.app import create_app
from proxy.config.settings import Rate
from proxy.demo.run import Demo, build_demo
from tests.redis_util import free_port
from tests.servers import ThreadedServer

pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WHEEL = "trigger-proxy-wheel"
CUSTOMER = "7001234"


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    front, back = free_port(), free_port()
    built = build_demo(front, back)
    settings = replace(
        built.settings, limits=replace(built.settings.limits, upstream=Rate(500, 60))
    )
    built = replace(built, settings=settings, proxy=create_app(settings))
    with ThreadedServer(built.stand_in.app, port=back), ThreadedServer(built, port=front):
        yield built


def origin(demo: Demo) -> str:
    return f"http://127.0.0.1:{demo.settings.server.port}"


def visit(browser: Browser, demo: Demo, path: str, customer: str | None) -> tuple[Page, list[Any]]:
    page = browser.new_context().new_page()
    requests: list[Any] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if customer is not None:  # the shop's own sign-in, then back to the page
        page.goto(f"{origin(demo)}/demo/shopify/login?customer={customer}")
    page.goto(f"{origin(demo)}{path}")
    assert errors == []
    return page, requests


def state(page: Page, expected: str, timeout: float = 15_000) -> None:
    from playwright.sync_api import expect

    expect(page.locator(WHEEL)).to_have_attribute("state", expected, timeout=timeout)


def rewarded(demo: Demo) -> list[str]:
    return [c.body["customer_id"] for c in demo.stand_in.calls if c.method == "POST"]


def test_the_wheel_spins_for_the_shops_customer_through_the_app_proxy(
    browser: Browser, demo: Demo
) -> None:
    page, requests = visit(browser, demo, "/demo/shopify", CUSTOMER)
    state(page, "ready")
    before = len(demo.shop.forwarded)
    page.locator(f"{WHEEL} >> button").click()
    state(page, "won")
    assert rewarded(demo)[-1] == f"shopify-{CUSTOMER}"
    calls = [r for r in requests if "/v1/" in r.url or "/api/v2/" in r.url]
    assert calls
    assert all(r.url.startswith(f"{origin(demo)}/apps/rewards/") for r in calls)
    assert all("authorization" not in r.headers for r in calls)  # no token: Shopify signs
    signed = [r for r in demo.shop.forwarded[before:] if r.method == "POST"]
    assert signed
    assert all(b"signature=" in r.url.query for r in signed)


def test_a_signed_out_shopper_is_asked_to_sign_in(browser: Browser, demo: Demo) -> None:
    page, _ = visit(browser, demo, "/demo/shopify", None)
    state(page, "signed-out")
    assert page.locator(f"{WHEEL} >> button").is_disabled()


def test_the_wheel_trades_a_theme_digest_for_a_session_and_spins(
    browser: Browser, demo: Demo
) -> None:
    customer = "7005678"
    page, requests = visit(browser, demo, "/demo/shopify/digest", customer)
    assert page.locator(WHEEL).get_attribute("data-digest")
    state(page, "ready")
    page.locator(f"{WHEEL} >> button").click()
    state(page, "won")
    assert rewarded(demo)[-1] == f"shopify-{customer}"
    trades = [r for r in requests if r.url.endswith("/v1/sessions/shopify")]
    assert len(trades) == 1  # once on load; the session serves every call after it
    spins = [r for r in requests if r.method == "POST" and "/v1/triggers/" in r.url]
    assert spins
    assert all(r.headers.get("authorization", "").startswith("Bearer ") for r in spins)


@pytest.mark.parametrize("seconds_left", [50, -30])  # near its end, and just past it
def test_the_wheel_trades_the_digest_again_when_its_session_nears_its_end(
    browser: Browser, demo: Demo, seconds_left: int
) -> None:
    customer = "7009876" if seconds_left > 0 else "7009877"
    page, requests = visit(browser, demo, "/demo/shopify/digest", customer)
    state(page, "ready")
    trades = [r for r in requests if r.url.endswith("/v1/sessions/shopify")]
    assert len(trades) == 1
    # Both clocks move (timers keep running): the page's, so that its session is near its end,
    # and the proxy's digest check's, so that it sees the digest as old as it then is.
    ahead = demo.settings.sessions.max_age_seconds - seconds_left
    verifier = demo.proxy._digests._verifier
    assert verifier is not None
    real = verifier._clock
    verifier._clock = lambda: real() + ahead
    try:
        page.clock.set_fixed_time(time.time() + ahead)
        page.locator(f"{WHEEL} >> button").click()
        state(page, "won")
    finally:
        verifier._clock = real
    trades = [r for r in requests if r.url.endswith("/v1/sessions/shopify")]
    assert len(trades) == 2
    assert rewarded(demo)[-1] == f"shopify-{customer}"
