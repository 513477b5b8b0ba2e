"""The demo page in a real browser: Debian's Chromium driven by Playwright.

Log in, spin, see the reward and the balance; spin again, be refused and see the countdown.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import need
from tests.demo_process import DemoProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
# Chromium's own background traffic has nowhere to go on these machines.
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture
def browser():
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


def test_spin_the_wheel_in_a_real_browser(browser, tmp_path: Path) -> None:
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
        won = int(re.search(r"\d+", page.locator("#result").inner_text()).group())
        assert 5 <= won <= 50
        expect(page.locator("#balance")).to_have_text(f"Balance: {won} coins")
        expect(page.locator("#left")).to_have_text("Spins left this minute: 0")
        page.screenshot(path=str(ARTIFACTS / "demo-reward.png"), full_page=True)

        expect(page.locator("#spin")).to_be_enabled()
        page.click("#spin")
        expect(page.locator("#error")).to_have_text("You have used your spins for now.")
        expect(page.locator("#countdown")).to_have_text(re.compile(r"Next spin in \d+s"))
        first = int(re.search(r"\d+", page.locator("#countdown").inner_text()).group())
        assert 1 <= first <= 60
        expect(page.locator("#spin")).to_be_disabled()
        page.wait_for_timeout(1500)
        later = int(re.search(r"\d+", page.locator("#countdown").inner_text()).group())
        assert later < first  # it counts down
        expect(page.locator("#balance")).to_have_text(f"Balance: {won} coins")  # nothing paid
        page.screenshot(path=str(ARTIFACTS / "demo-countdown.png"), full_page=True)
        assert errors == []
