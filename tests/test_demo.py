"""The README's first command: ``trigger-proxy demo`` brings everything up, with no config,
no environment and no network, and a reward goes through it over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.demo_process import REAL_LOOKING_KEY, DemoProcess

pytestmark = pytest.mark.slow


def test_the_demo_serves_a_reward_over_http(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with DemoProcess(log) as demo:
        page = httpx.get(demo.url)
        assert page.status_code == 200
        assert "Spin the wheel" in page.text
        assert "/client/trigger-proxy.js" in page.text
        client_js = httpx.get(demo.url + "client/trigger-proxy.js")
        assert client_js.headers["content-type"].startswith("text/javascript")
        assert "export function createClient" in client_js.text

        login = httpx.post(demo.url + "demo/login", json={"customer_id": "demo-customer-1"})
        assert login.status_code == 200
        tok = login.json()["token"]
        spin = httpx.post(
            demo.url + "v1/triggers/spin-wheel", headers={"authorization": f"Bearer {tok}"}
        )
        assert spin.status_code == 200, spin.text
        reward = spin.json()["data"]["wallet_reward"]
        assert 5 <= reward["coins"] <= 50
        assert spin.headers["ratelimit-remaining"] == "1"  # two spins a minute
        second = httpx.post(
            demo.url + "v1/triggers/spin-wheel", headers={"authorization": f"Bearer {tok}"}
        )
        assert second.status_code == 200
        again = httpx.post(
            demo.url + "v1/triggers/spin-wheel", headers={"authorization": f"Bearer {tok}"}
        )
        assert again.status_code == 429
        assert again.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(again.headers["retry-after"]) <= 60

        # Bound to loopback only.
        port = int(demo.url.rsplit(":", 1)[1].strip("/"))
        outward = socket.gethostbyname(socket.gethostname())
        if not outward.startswith("127."):
            with socket.socket() as sock:
                sock.settimeout(1)
                assert sock.connect_ex((outward, port)) != 0
    text = log.read_text()
    assert REAL_LOOKING_KEY not in text
    assert tok not in text
    assert "Traceback" not in text


def test_the_demo_cookie_session_works_from_its_own_page(tmp_path: Path) -> None:
    with DemoProcess(tmp_path / "demo.log") as demo, httpx.Client(base_url=demo.url) as client:
        client.post("demo/login", json={"customer_id": "demo-customer-2"})
        origin = demo.url.rstrip("/")
        ok = client.post("v1/triggers/daily-checkin", headers={"origin": origin})
        assert ok.status_code == 200
        cross_site = client.post(
            "v1/triggers/daily-checkin", headers={"origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403
        assert cross_site.json()["error"]["code"] == "origin_not_allowed"
