"""Requests under ``/shopify/``: what a shop's Shopify App Proxy forwards (docs/shopify.md).

A storefront calls its own ``/apps/<subpath>/v1/triggers/spin-wheel``; Shopify adds its signed
parameters (``shop``, ``logged_in_customer_id``, ``path_prefix``, ``timestamp``, ``signature``)
and forwards it to the app's proxy URL, ``https://<proxy>/shopify``. Under that prefix the
storefront's routes are served as elsewhere (rewards, Nector's drop-in, the reads, the client
scripts), seen through ``AppProxyRequest``: the prefix and Shopify's parameters left out, no
bearer token and no cookie, the session being the signed query alone (``identity.shopify``).

The browser called its own shop, so the call needs no CORS; an Origin that comes along must be
that shop's (the host Shopify names in X-Forwarded-Host, its permanent domain) or one of
``cors.allow_origins``, so that another site's page cannot spend a signed-in shopper's spins.
"""

from __future__ import annotations

from proxy.config.settings import ShopifySettings
from proxy.http.asgi import AppProxyRequest, Request
from proxy.http.paths import SCRIPTS, TRIGGER_PREFIX, route_label
from proxy.http.responses import NECTOR_PREFIX
from proxy.identity.shopify import parse_app_proxy_query
from proxy.reads.routes import read_of

PREFIX = "/shopify"
PATH_PREFIX = PREFIX + "/"  # the one check every request pays
_SCRIPTS = frozenset(SCRIPTS)


class AppProxyRoutes:
    """Turns a request under ``/shopify/`` into the view its route takes."""

    def __init__(self, shopify: ShopifySettings) -> None:
        self._on = shopify.app_proxy and bool(shopify.shop)
        self._shop_origin = f"https://{shopify.shop}"

    def enter(
        self, request: Request, origin: str | None, listed: bool
    ) -> tuple[Request, bool, str]:
        """The route's view of ``request``, whether its Origin may call (``listed``: it is in
        ``cors.allow_origins``), and its label for logs. A path that is not a storefront's
        route, or App Proxy requests turned off, keep the request as it came: not found."""
        inner = request.path[len(PREFIX) :]
        served = (
            inner.startswith(TRIGGER_PREFIX) or inner.startswith(NECTOR_PREFIX) or inner in _SCRIPTS
        )
        if not self._on or not served:
            return request, listed, "unknown"
        signed, rest = parse_app_proxy_query(request.query)
        view = AppProxyRequest(request, PREFIX, rest, signed)
        allowed = origin is None or listed or self._shops_own(origin, request)
        label = route_label(inner, read_of)
        return view, allowed, label if label == "unknown" else PREFIX + label

    def _shops_own(self, origin: str, request: Request) -> bool:
        """An Origin of the shop the browser called: the host Shopify forwarded for, or the
        shop's permanent domain."""
        if origin == self._shop_origin:
            return True
        host = request.headers.get(b"x-forwarded-host")
        return host is not None and origin.partition("://")[2] == host.decode("latin-1")
