"""A stand-in for a Shopify shop, for the demo's "Shopify theme" mode and the tests.

``ShopStandIn`` does what Shopify does for a theme with the proxy's app installed: it keeps a
signed-in customer in its own cookie, renders theme pages, and forwards every request under its
App Proxy path (``/apps/rewards/...``) to the proxy's ``/shopify/...``, adding the parameters
Shopify signs (``shop``, ``logged_in_customer_id``, ``path_prefix``, ``timestamp``,
``signature``), dropping the cookie on the way in and Set-Cookie on the way out. It also renders
the theme digest a Liquid snippet would (``data-customer``, ``data-ts``, ``data-digest``).
The proxy is reached through ``transport``: over HTTP, or in-process with httpx's ASGI transport.
"""

from __future__ import annotations

import html
import time
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy.identity.shopify import sign_app_proxy, theme_digest

SUBPATH = "/apps/rewards"
CUSTOMER_COOKIE = "demo_shopify_customer"  # stands in for Shopify's own customer session
# Of a proxied answer, what Shopify strips (shopify.dev, "App proxies", disallowed headers).
_STRIPPED = frozenset(["set-cookie", "connection", "server", "date", "transfer-encoding"])
_NOT_FORWARDED = frozenset(["cookie", "host", "content-length", "connection"])

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tiny shop: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto;
padding: 0 1rem; }} trigger-proxy-wheel:not(:defined) {{ display: block; height: 15.75rem }}
</style></head>
<body><h1>Tiny shop ({title})</h1>
<p>{who} <a href="/demo/shopify/login?customer=7001234">Sign in as customer 7001234</a> ·
<a href="/demo/shopify/login?customer=">Sign out</a> ·
<a href="/demo/shopify">App Proxy page</a> · <a href="/demo/shopify/digest">Digest page</a></p>
<script type="module" src="{script}"></script>
{wheel}
</body></html>
"""


WHEEL = '<trigger-proxy-wheel trigger="spin-wheel" base-url="{base}"{data}></trigger-proxy-wheel>'


class ShopStandIn:
    """A Shopify shop in front of the proxy: see the module's docstring."""

    def __init__(
        self,
        *,
        shop: str,
        app_secret: str,
        digest_secret: str | None,
        transport: httpx.AsyncBaseTransport,
        proxy_url: str = "http://proxy",
        page_proxy_url: str = "",
    ) -> None:
        self.shop = shop
        self._app_secret = app_secret
        self._digest_secret = digest_secret
        self._client = httpx.AsyncClient(transport=transport, base_url=proxy_url)
        self._page_proxy_url = page_proxy_url  # where a digest page's wheel calls the proxy
        self.forwarded: list[httpx.Request] = []
        self.app = Starlette(
            routes=[
                Route("/demo/shopify", self._app_proxy_page),
                Route("/demo/shopify/digest", self._digest_page),
                Route("/demo/shopify/login", self._login),
                Route(SUBPATH + "/{rest:path}", self._forward, methods=["GET", "POST", "OPTIONS"]),
            ]
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _customer(self, request: Request) -> str:
        customer = request.cookies.get(CUSTOMER_COOKIE, "")
        return customer if customer.isdigit() else ""

    def _page(self, request: Request, title: str, script: str, wheel: str) -> Response:
        customer = self._customer(request)
        who = f"Signed in as customer {customer}." if customer else "Not signed in."
        body = PAGE.format(title=title, who=who, script=script, wheel=wheel)
        return HTMLResponse(body, headers={"cache-control": "no-store"})

    async def _app_proxy_page(self, request: Request) -> Response:
        """The theme's one tag, through the shop's own App Proxy path: no token, no CORS."""
        wheel = (
            f'<trigger-proxy-wheel trigger="spin-wheel" base-url="{SUBPATH}"></trigger-proxy-wheel>'
        )
        return self._page(request, "App Proxy", f"{SUBPATH}/client/trigger-proxy-wheel.js", wheel)

    async def _digest_page(self, request: Request) -> Response:
        """What the Liquid snippet renders: the customer, the time and their digest."""
        customer = self._customer(request)
        base = html.escape(self._page_proxy_url)
        data = ""
        if customer and self._digest_secret is not None:
            ts = int(time.time())
            digest = theme_digest(self._digest_secret, self.shop, customer, ts)
            data = (
                f' data-shop="{self.shop}" data-customer="{customer}" data-ts="{ts}"'
                f' data-digest="{digest}"'
            )
        wheel = WHEEL.format(base=base, data=data)
        return self._page(request, "theme digest", f"{base}/client/trigger-proxy-wheel.js", wheel)

    async def _login(self, request: Request) -> Response:
        """Stands in for the shop's customer login (Shopify's, not the proxy's)."""
        customer = request.query_params.get("customer", "")
        back = request.headers.get("referer") or "/demo/shopify"
        response = RedirectResponse(back, status_code=303)
        if customer.isdigit():
            response.set_cookie(CUSTOMER_COOKIE, customer, httponly=True, samesite="lax")
        else:
            response.delete_cookie(CUSTOMER_COOKIE)
        return response

    async def _forward(self, request: Request) -> Response:
        """As Shopify's App Proxy: sign the query (the storefront's own parameters too) and
        forward to the proxy's /shopify/... ."""
        params = [
            *parse_qsl(request.url.query, keep_blank_values=True),
            ("shop", self.shop),
            ("logged_in_customer_id", self._customer(request)),
            ("path_prefix", SUBPATH),
            ("timestamp", str(int(time.time()))),
        ]
        params.append(("signature", sign_app_proxy(self._app_secret, params)))
        headers = [(k, v) for k, v in request.headers.items() if k not in _NOT_FORWARDED]
        headers.append(("x-forwarded-host", request.headers.get("host", "")))
        upstream = self._client.build_request(
            request.method,
            f"/shopify/{request.path_params['rest']}?{urlencode(params)}",
            headers=headers,
            content=await request.body(),
        )
        self.forwarded.append(upstream)
        answer = await self._client.send(upstream)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _STRIPPED}
        kept.pop("content-length", None)
        return Response(answer.content, status_code=answer.status_code, headers=kept)
