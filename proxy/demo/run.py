"""``trigger-proxy demo``: the whole product on one command, on 127.0.0.1 only.

It starts the real proxy (the same ``create_app`` as ``serve``), the Nector stand-in on a
second loopback port that the proxy reaches over HTTP, and a demo storefront page with a
spin-the-wheel widget (the proxy's own ``<trigger-proxy-wheel>``), the customer's balance,
coupons and history read through the proxy. Every secret is generated for the run, and no
TRIGGER_PROXY_* variable is read, so a real API key can never sit behind the demo.

``/demo/login`` stands in for the merchant's backend: a real storefront mints the session in
its own backend after its own login (``mint_token`` or ``POST /v1/sessions``).

A campaign (docs/campaigns.md) runs beside the wheel: ``scratch-card``, with coin budgets and
a schedule that opens two minutes after the demo starts (the "not active yet" countdown).

``/demo/shopify`` is the "Shopify theme" mode, for a shop with no backend at all: a stand-in
shop (``shopify.py``) signs the wheel's calls through its App Proxy path, ``/apps/rewards``, as
Shopify does; ``/demo/shopify/digest`` carries the digest a theme renders instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from proxy.app import App, create_app
from proxy.config.schema import READ_ROUTES
from proxy.config.settings import Settings
from proxy.http.asgi import Receive, Scope, Send
from proxy.identity.sessions import mint_token
from proxy.observe.logs import configure

from .nector import NectorStandIn, StandInTrigger
from .shopify import SUBPATH, ShopStandIn

HOST = "127.0.0.1"
SPIN_WHEEL = "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10"
DAILY_CHECKIN = "0f6d3a52-7b8e-4c1d-9e2f-5a4b3c2d1e0f"
SPIN_OFFER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
# A campaign (docs/campaigns.md): coin budgets, and a schedule that opens soon after the start.
SCRATCH_CARD = "5d2c8a14-3f6e-4b7a-9c1d-2e8f7a6b5c4d"
OPENS_AFTER_SECONDS = 120
SPIN_COINS = (5, 50)  # the wheel's range, which its "Ways to earn" line says too
CHECKIN_COINS = 5
SCRATCH_COINS = (5, 100)
DEMO_CUSTOMER = re.compile(r"^[A-Za-z0-9_.@-]{8,64}$")
CUSTOMER_RULE = "Use 8 to 64 characters: letters, digits, or . _ @ -"
# Not HttpOnly: the page shows who is signed in; the session itself stays in the HttpOnly one.
SHOWN_CUSTOMER_COOKIE = "demo_customer"
DEMO_SHOP = "tinyshop.myshopify.com"


@dataclass
class Demo:
    """The demo's parts, for the CLI and for tests that drive it in-process."""

    settings: Settings
    proxy: App
    stand_in: NectorStandIn
    site: Starlette
    shop: ShopStandIn = field(init=False)  # forwards to this proxy, whichever it is

    def __post_init__(self) -> None:
        secrets = self.settings.secrets
        self.shop = ShopStandIn(
            shop=self.settings.shopify.shop,
            app_secret=secrets.shopify_app_secrets[-1].reveal(),
            digest_secret=secrets.shopify_digest_secrets[-1].reveal(),
            transport=httpx.ASGITransport(app=self.proxy, client=(HOST, 443)),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path.startswith(("/demo/shopify", SUBPATH + "/"))):
            await self.shop.app(scope, receive, send)
        elif scope["type"] == "http" and (path == "/" or path.startswith("/demo/")):
            await self.site(scope, receive, send)
        else:
            await self.proxy(scope, receive, send)


def demo_settings(
    port: int,
    upstream_port: int,
    session_secret: str,
    api_key: str,
    workspace_id: str,
    shopify_secrets: tuple[str, str] | None = None,
) -> Settings:
    origins = [f"http://{HOST}:{port}", f"http://localhost:{port}"]
    config: dict[str, Any] = {
        "upstream": {"url": f"http://{HOST}:{upstream_port}/api/v2/merchant/activities"},
        "server": {"host": HOST, "port": port},
        "cors": {"allow_origins": origins, "allow_credentials": True},
        # Sized so that one visitor trying everything, as several customers, never runs out:
        # every reward drops that customer's kept reads, so the page reads them again.
        "limits": {"per_customer": "2/minute;20/day", "upstream": "300/minute"},
        "reads": {
            "routes": list(READ_ROUTES),
            "budget": "200/minute",
            "per_customer": "100/minute",
            "cache_seconds": 60,
        },
        "logging": {"format": "plain"},
        "shopify": {"shop": DEMO_SHOP, "app_proxy": shopify_secrets is not None},
        "triggers": [
            {
                "id": SPIN_WHEEL,
                "name": "spin-wheel",
                "sources": ["web", "mobile"],
                "per_customer": "2/minute;20/day",
                "override": {
                    "wallet": {
                        "title": "Spin the wheel",
                        "operation": "cr",
                        "coin_range": {"min": SPIN_COINS[0], "max": SPIN_COINS[1]},
                    },
                    "offer": {"offer_id": SPIN_OFFER},
                },
            },
            {"id": DAILY_CHECKIN, "name": "daily-checkin", "per_customer": "1/day"},
            {
                "id": SCRATCH_CARD,
                "name": "scratch-card",
                "per_customer": "2/minute;20/day",
                "coin_budget": "1000/day",
                "customer_coins": "300/day",
                "starts_at": _instant(time.time() + OPENS_AFTER_SECONDS),
                "override": {
                    "wallet": {
                        "title": "Scratch card",
                        "coin_range": {"min": SCRATCH_COINS[0], "max": SCRATCH_COINS[1]},
                    }
                },
            },
        ],
    }
    # The demo's own environment: generated secrets only, never the process's TRIGGER_PROXY_*.
    environ = {
        "TRIGGER_PROXY_API_KEY": api_key,
        "TRIGGER_PROXY_WORKSPACE_ID": workspace_id,
        "TRIGGER_PROXY_SESSION_SECRETS": session_secret,
    }
    if shopify_secrets is not None:
        environ["TRIGGER_PROXY_SHOPIFY_APP_SECRETS"] = shopify_secrets[0]
        environ["TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS"] = shopify_secrets[1]
    return Settings.from_mapping(config, environ)


def _instant(unix: float) -> str:
    return datetime.fromtimestamp(int(unix), UTC).isoformat().replace("+00:00", "Z")


def build_demo(port: int, upstream_port: int) -> Demo:
    api_key, workspace_id = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session_secret = secrets.token_urlsafe(32)
    shopify = (secrets.token_hex(16), secrets.token_urlsafe(32))  # the app's, the theme's
    settings = demo_settings(port, upstream_port, session_secret, api_key, workspace_id, shopify)
    stand_in = NectorStandIn(api_key=api_key, workspace_id=workspace_id)
    spin = f"Earn {SPIN_COINS[0]} to {SPIN_COINS[1]} coins and a coupon"
    stand_in.add_trigger(
        StandInTrigger(SPIN_WHEEL, coins=10, allow_override=True, name="spin", description=spin)
    )
    stand_in.add_trigger(StandInTrigger(DAILY_CHECKIN, coins=CHECKIN_COINS, name="check-in"))
    scratch = f"Earn {SCRATCH_COINS[0]} to {SCRATCH_COINS[1]} coins"
    stand_in.add_trigger(
        StandInTrigger(SCRATCH_CARD, allow_override=True, name="scratch card", description=scratch)
    )
    stand_in.offers[SPIN_OFFER] = {"_id": SPIN_OFFER, "name": "10% off your next order"}
    page = resources.files("proxy.demo").joinpath("static/index.html").read_text()

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def login(request: Request) -> Response:
        """Stands in for the merchant's backend: after its own login, it mints the session."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        customer = body.get("customer_id") if isinstance(body, dict) else None
        if not isinstance(customer, str) or not DEMO_CUSTOMER.match(customer):
            return JSONResponse({"error": CUSTOMER_RULE}, 400)
        ttl = settings.sessions.max_age_seconds
        token = mint_token([session_secret], {"customer_id": customer}, ttl_seconds=ttl)
        response = JSONResponse({"token": token, "customer_id": customer})
        cookie = settings.sessions.cookie_name
        response.set_cookie(cookie, token, max_age=ttl, httponly=True, samesite="strict")
        response.set_cookie(SHOWN_CUSTOMER_COOKIE, customer, max_age=ttl, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(settings.sessions.cookie_name, samesite="strict")
        response.delete_cookie(SHOWN_CUSTOMER_COOKIE, samesite="strict")
        return response

    site = Starlette(
        routes=[
            Route("/", index),
            Route("/demo/login", login, methods=["POST"]),
            Route("/demo/logout", logout, methods=["POST"]),
        ]
    )
    return Demo(settings, create_app(settings), stand_in, site)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serving(demo: Demo, front: socket.socket, back: socket.socket) -> AsyncIterator[None]:
    """Serve the demo on ``front`` and the stand-in on ``back`` until the block exits."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app, lifespan="off", log_config=None, access_log=False, server_header=False
            )
        )
        for app in (demo, demo.stand_in.app)
    ]
    async with demo.proxy.lifespan():
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, sock in zip(servers, (front, back), strict=True)
        ]
        try:
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    raise RuntimeError("the demo servers failed to start")
                await asyncio.sleep(0.02)
            yield
        finally:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)


def run_demo(port: int = 8080) -> int:
    try:
        front = _bind(port)
    except OSError as exc:
        print(f"trigger-proxy demo: cannot listen on {HOST}:{port}: {exc.strerror}")
        return 1
    back = _bind(0)
    configure("info", "plain")  # before the app is built: its request lines take this handler
    demo = build_demo(front.getsockname()[1], back.getsockname()[1])

    async def main() -> None:
        async with serving(demo, front, back):
            url = f"http://{HOST}:{front.getsockname()[1]}/"
            print(f"trigger-proxy demo: open {url}  (Ctrl-C stops it)", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
