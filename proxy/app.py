"""The application: a Starlette app whose reward routes take a raw-ASGI fast path.

``create_app`` builds it. Health, readiness, metrics, the OpenAPI document, the client scripts,
the trigger listing and minting are Starlette routes, with exception handlers that render the
contract's errors; the lifespan (Starlette's) opens and closes the limit store and upstream.

Every HTTP request first passes the checks the contract puts before any route's own work, in one
frame: route and method, the Origin (403 origin_not_allowed), a browser's preflight. The reward
routes (``/v1/triggers/{trigger}``, Nector's drop-in, a redemption) and the reads are then
answered there directly: refusals are most of the traffic, and Starlette's middleware and
routing in front would add half again to a refusal's CPU (bench/routing.py). Every answer gets
X-Request-ID, the CORS headers and one access line. Mounted under a prefix
(``Mount("/rewards", app=...)``), routes are matched without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from importlib import resources

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route

from proxy.app_proxy import PATH_PREFIX as APP_PROXY_PREFIX
from proxy.app_proxy import AppProxyRoutes
from proxy.components import digest_minter, minter, open_components, report_store
from proxy.config.settings import Settings
from proxy.errors import (
    MethodNotAllowed,
    NotFound,
    OriginNotAllowed,
    ProxyError,
    StorageUnavailable,
)
from proxy.http.asgi import Receive, Request, Scope, Send, TrustedPeers, UntrustedForwarded
from proxy.http.cors import CorsPolicy
from proxy.http.endpoints import (
    STATE,
    answered,
    internal_error,
    json_response,
    on_crash,
    on_http_exception,
    on_refusal,
    openapi_document,
    public_json_endpoint,
    script_endpoint,
    with_headers,
)
from proxy.http.paths import DROPIN_PATH, SCRIPTS, TRIGGER_PREFIX, permits, route_label
from proxy.http.responses import NECTOR_PREFIX, Answer, render_error
from proxy.identity.auth import FailureLimit
from proxy.limits.decisions import LimitStore
from proxy.observe.logs import LOG, AccessRecord, RequestLog, configure_if_unset
from proxy.observe.logs import flush as flush_logs
from proxy.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from proxy.observe.metrics import Metrics, flush_periodically
from proxy.reads.handler import Reads
from proxy.reads.routes import read_of
from proxy.rewards.gateway import Gateway
from proxy.rewards.policy import trigger_listing
from proxy.rewards.redeem import REDEEM_PATH, Redemptions


class App(Starlette):
    """trigger-proxy as a Starlette application (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        store: LimitStore | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._store = store
        self._cors = CorsPolicy(settings.cors)
        trusted = TrustedPeers(settings.server.forwarded_allow_ips)
        self._trusted = trusted if trusted else None
        self._untrusted_forwarded = UntrustedForwarded(trusted)
        static = resources.files("proxy").joinpath("static")
        self._openapi = openapi_document(
            static.joinpath("openapi.json").read_text(), settings.sessions
        )
        self._gateway: Gateway | None = None
        self._reads: Reads | None = None
        self._redemptions: Redemptions | None = None
        configure_if_unset(settings.logging.level, settings.logging.format)
        self._log = RequestLog()
        self._minter = minter(settings)
        self._failures = FailureLimit(settings.limits.per_ip_invalid_session)
        self._digests = digest_minter(settings, self._failures)
        self._app_proxy = AppProxyRoutes(settings.shopify)
        self.metrics = Metrics([t.name or t.id for t in settings.triggers])
        # Per-trigger volumes and forgery rates are not for everyone (SECURITY.md, finding 7).
        self._metrics_here = settings.server.metrics_on_main_port
        triggers, per_customer = settings.triggers, settings.limits.per_customer
        listing = trigger_listing(triggers, per_customer, site_key=settings.challenge.site_key)
        routes = [
            Route("/healthz", self._health, methods=["GET"]),
            Route("/readyz", self._ready, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
            Route("/openapi.json", self._openapi_document, methods=["GET"]),
            *(
                Route(path, script_endpoint(static.joinpath(name).read_bytes()), methods=["GET"])
                for path, name in SCRIPTS.items()
            ),
            Route("/v1/sessions", self._mint, methods=["POST"]),
            Route("/v1/triggers", public_json_endpoint(listing), methods=["GET"]),
            Route("/v1/sessions/shopify", self._mint_from_digest, methods=["POST"]),
        ]
        # The methods of every route, for the checks before routing; the reward routes' own.
        self._methods = {r.path: next(iter(r.methods - {"HEAD"})) for r in routes if r.methods}
        self._methods[DROPIN_PATH] = self._methods[REDEEM_PATH] = "POST"
        super().__init__(
            routes=routes,
            exception_handlers={
                ProxyError: on_refusal,
                HTTPException: on_http_exception,
                Exception: on_crash,
            },
            lifespan=lambda app: self.lifespan(),
        )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open the limit store and the upstream client; close both on the way out.

        Mounted in a parent app, pass it on:
        ``Starlette(..., lifespan=app.router.lifespan_context)``.
        """
        parts = open_components(
            self.settings, self._log, self._failures, transport=self._transport, store=self._store
        )
        self._gateway, self._reads = parts.gateway, parts.reads
        self._redemptions = parts.redemptions
        await report_store(self.settings, parts.store)
        flusher = asyncio.create_task(flush_periodically(self.metrics))
        try:
            yield
        finally:
            self._gateway = self._reads = self._redemptions = None
            flusher.cancel()
            await parts.aclose()
            flush_logs()
            self.metrics.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request, start to end, in one frame: the refusals that make up most of the
        traffic are short, so calls and awaits are a real share of their cost."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await super().__call__(scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # no WebSocket routes
            return
        started = time.perf_counter_ns()
        request = Request(scope, receive, self._trusted)
        if self._untrusted_forwarded.pending and b"x-forwarded-for" in request.headers:
            self._untrusted_forwarded.seen(scope.get("client"))
        request_id = request.request_id
        raw_origin = request.headers.get(b"origin")
        origin = None if raw_origin is None else raw_origin.decode("latin-1")
        origin_ok = listed = origin is not None and self._cors.allows(origin)
        if request.path.startswith(APP_PROXY_PREFIX):  # Shopify's App Proxy: app_proxy.py
            request, origin_ok, label = self._app_proxy.enter(request, origin, listed)
        else:
            label = route_label(request.path, read_of)
        record = AccessRecord(request_id, request.method, label, request.client_ip)
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            try:
                answer = await self._route(request, record, origin, origin_ok)
            except ProxyError as exc:
                record.code = exc.code
                if exc.cause is not None:
                    record.cause = exc.cause
                answer = Answer(
                    exc.status, render_error(exc, request.path, request_id), exc.headers
                )
            except Exception:
                LOG.exception("unhandled error", extra={"fields": {"request_id": request_id}})
                answer = internal_error(record, request)
            varies = answer is not None and (b"vary", b"Origin") in answer.headers
            extra = self._cors.response_headers(origin, varies) if listed and origin else []
            if answer is None:  # a Starlette route's: it sends its own answer
                scope = request.scope  # an App Proxy request's has the route's path
                scope[STATE] = (request, record)
                # Starlette answers a crash (500, on_crash) and then raises it again for the server.
                with contextlib.suppress(Exception):
                    await super().__call__(scope, receive, with_headers(send, record, extra))
            else:
                record.status = status = answer.status
                body = answer.body
                headers = [
                    (b"x-request-id", request_id.encode()),
                    (b"content-type", answer.content_type),
                    (b"content-length", b"%d" % len(body)),
                    *answer.headers,
                    *extra,
                ]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                if request.method == "HEAD":
                    body = b""  # the length stays the GET's (RFC 9110, 9.3.2)
                await send({"type": "http.response.body", "body": body})
            # Whole microseconds, as milliseconds, without round()'s decimal conversion.
            record.duration_ms = (time.perf_counter_ns() - started) // 1000 / 1000
            self._log.access(record)
            metrics.observe(record)
        finally:
            metrics.in_flight -= 1

    async def _route(
        self, request: Request, record: AccessRecord, origin: str | None, origin_ok: bool
    ) -> Answer | None:
        """The checks before any route's own work; a reward route's answer, or None for a
        Starlette route to answer."""
        path, method = request.path, request.method
        trigger = path.startswith(TRIGGER_PREFIX)
        read = None
        if trigger:  # a reward, or what a widget may show of the trigger
            allowed: str | None = "POST" if method == "POST" else "GET, POST"
        else:
            allowed = self._methods.get(path)
            read = read_of(path) if path.startswith(NECTOR_PREFIX) else None
            if read is not None:  # a read, or the drop-in's GET and POST
                allowed = "GET, POST" if path == DROPIN_PATH else "GET"
        if allowed is None:
            raise NotFound()
        if origin is not None and not origin_ok:
            raise OriginNotAllowed()
        preflight = method == "OPTIONS" and b"access-control-request-method" in request.headers
        if preflight and origin is not None:
            methods = f"{allowed}, OPTIONS"
            headers = self._cors.preflight_headers(methods, path.startswith(NECTOR_PREFIX))
            return Answer(204, b"", headers)
        if method != allowed and not permits(allowed, method):
            raise MethodNotAllowed(headers=[(b"allow", allowed.encode())])
        cookie_ok = origin_ok and origin is not None and self._cors.allows_cookie(origin)
        if trigger:  # the reward route first: nearly every request takes it
            ref = path[len(TRIGGER_PREFIX) :]
            if not ref or "/" in ref:
                raise NotFound()
            if method != "POST":
                return self._started().describe(ref, record)
            return await self._started().trigger(request, ref, record, cookie_ok)
        if read is not None and method != "POST":
            # A browser sends no Origin on a same-origin GET; its Fetch Metadata, which no
            # page's script can set, tells the read is the proxy's own page's (SECURITY.md).
            if origin is None and request.headers.get(b"sec-fetch-site") == b"same-origin":
                cookie_ok = self._cors.allow_credentials
            if self._reads is None:
                raise StorageUnavailable("the proxy is not started")
            return await self._reads.read(request, read, record, cookie_ok)
        if path == DROPIN_PATH:
            return await self._started().dropin(request, record, cookie_ok)
        if path == REDEEM_PATH and self._redemptions is not None:  # rewards/redeem.py
            return await self._redemptions.redeem(request, record, cookie_ok)
        return None

    def _started(self) -> Gateway:
        if self._gateway is None:
            raise StorageUnavailable("the proxy is not started")
        return self._gateway

    async def _health(self, request: StarletteRequest) -> Response:
        return json_response(b'{"status":"ok"}')

    async def _ready(self, request: StarletteRequest) -> Response:
        await self._started().ping()
        return json_response(b'{"status":"ready"}')

    async def _metrics(self, request: StarletteRequest) -> Response:
        if not self._metrics_here:
            raise NotFound()  # only on the admin port, or nowhere
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE.decode())

    async def _openapi_document(self, request: StarletteRequest) -> Response:
        return json_response(self._openapi)

    async def _mint(self, request: StarletteRequest) -> Response:
        view, _ = request.scope[STATE]
        return answered(await self._minter.mint(view))

    async def _mint_from_digest(self, request: StarletteRequest) -> Response:
        view, _ = request.scope[STATE]
        return answered(await self._digests.mint(view))


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: LimitStore | None = None,
) -> App:
    """Build the proxy for ``settings``: a ``starlette.applications.Starlette``. ``transport``
    replaces the upstream transport (tests pass ``httpx.MockTransport``), ``store`` the limit
    store named in the settings."""
    return App(settings, transport=transport, store=store)
